"""The ``napari-xrm-al`` command line: the same core as the widgets, headless.

Each subcommand lives in its own module under :mod:`napari_xrm_al.commands`
and exposes ``register(subparsers)``, which adds its parser and sets
``func`` to a handler ``(args) -> int``. Problems the user can fix
(:class:`~napari_xrm_al.errors.XrmError`, and a full disk, a read-only or
forbidden path or a lack of memory) are printed as one line and give exit
status 2; nothing prints a traceback unless ``--debug`` is given.

A subcommand names the options that are files it reads and writes
(``parser.set_defaults(reads=(...), writes=(...))``); before it runs, every
output is checked against every input and every other output
(:func:`~napari_xrm_al.io.output_paths.check_apart`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from napari_xrm_al import __version__
from napari_xrm_al.core.process_memory import import_monai_lean, limit_malloc_arenas
from napari_xrm_al.errors import XrmError
from napari_xrm_al.io.output_paths import check_apart, resource_error

PROG = "napari-xrm-al"

#: Subcommand modules, in the order ``--help`` lists them.
COMMANDS = (
    "demo",
    "sample",
    "info",
    "metrology",
    "pretrain",
    "train",
    "predict",
    "rank",
    "session",
    "simulate",
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Segment 3D X-ray microscopy scans with active learning: "
            "the napari plugin's core, headless."
        ),
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show full tracebacks for unexpected errors",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"napari_xrm_al.commands.{name}")
        module.register(subparsers)
    return parser


def error(message: str) -> None:
    """Print one error line the way every subcommand does."""
    print(f"{PROG}: error: {message}", file=sys.stderr)


def check_paths_apart(args: argparse.Namespace) -> None:
    """Refuse a command whose output would overwrite one of its inputs."""

    def named(dests: Sequence[str]) -> dict[str, str | None]:
        return {"--" + d.replace("_", "-"): getattr(args, d) for d in dests}

    check_apart(named(getattr(args, "writes", ())), named(getattr(args, "reads", ())))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    # Before any thread or MONAI import: lower the peak memory of headless jobs.
    limit_malloc_arenas()
    import_monai_lean()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        check_paths_apart(args)
        return int(args.func(args) or 0)
    except XrmError as exc:
        error(str(exc))
        return 2
    except KeyboardInterrupt:
        error("interrupted")
        return 130
    except Exception as exc:
        if args.debug:
            raise
        problem = resource_error(exc)
        if problem is not None:
            error(str(problem))
            return 2
        error(
            f"unexpected {type(exc).__name__}: {exc} "
            f"(this is a bug; rerun with '{PROG} --debug {args.command} ...' for details)"
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

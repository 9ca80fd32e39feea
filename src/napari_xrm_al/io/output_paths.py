"""Where results may be written: never onto an input, only where they fit.

Every command and dock step that writes a file the user named checks it here
before any work: :func:`check_apart` refuses an output that is (after resolving
symlinks, ``..`` and hard links) an input, lies inside one or contains one, or
is another output; :func:`check_writable` refuses a folder that is missing,
read-only or too full. :func:`resource_error` turns a write that failed anyway
(or a lack of memory) into one sentence naming the result, not its temporary
sibling.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from napari_xrm_al.errors import (
    OS_PROBLEMS,
    InputError,
    XrmError,
    os_problem,
    out_of_memory,
)
from napari_xrm_al.io.atomic import final_path

PathLike = str | os.PathLike[str]


def _resolved(path: PathLike) -> Path:
    return Path(path).expanduser().resolve()


def _relation(output: PathLike, source: PathLike) -> str | None:
    """How ``output`` clashes with ``source``: same file, inside, containing, or None."""
    out, src = _resolved(output), _resolved(source)
    if out == src:
        return "is the same file as"
    try:
        if os.path.samefile(output, source):  # hard links; case-insensitive names
            return "is the same file as"
    except OSError:  # one of them does not exist (yet)
        pass
    if out.is_relative_to(src):
        return "lies inside"
    if src.is_relative_to(out):
        return "contains"
    return None


def check_apart(
    outputs: Mapping[str, PathLike | None], inputs: Mapping[str, PathLike | None]
) -> None:
    """Refuse an output that would overwrite an input or another output.

    Parameters
    ----------
    outputs, inputs
        What the user calls each path (e.g. ``"--out"``, ``"the image"``) → the
        path; None entries are skipped. A folder (e.g. a zarr store) clashes
        with any path inside it.

    Raises
    ------
    XrmError
        One sentence naming both paths.
    """
    given_out = [(k, v) for k, v in outputs.items() if v is not None]
    given_in = [(k, v) for k, v in inputs.items() if v is not None]
    for i, (what, path) in enumerate(given_out):
        for source_what, source in given_in:
            relation = _relation(path, source)
            if relation is not None:
                raise XrmError(
                    f"{what} {path} {relation} {source_what} {source}: "
                    "refusing to overwrite an input; write the result elsewhere."
                )
        for other_what, other in given_out[i + 1 :]:
            relation = _relation(path, other)
            if relation is not None:
                raise XrmError(
                    f"{what} {path} {relation} {other_what} {other}: "
                    "give each output its own path."
                )


def check_writable(path: PathLike, what: str, needed_bytes: int = 0) -> Path:
    """``path`` if its folder exists, takes a new file and has room for ``needed_bytes``.

    Writability is tried with a real (hidden, removed) file, so that a
    read-only file system is found even where :func:`os.access` says yes.

    Raises
    ------
    InputError
        Naming ``path``, its folder and the problem.
    """
    path = Path(path)
    folder = path.absolute().parent
    if not folder.is_dir():
        problem = "is not a folder" if folder.exists() else "does not exist"
        raise InputError(path, f"cannot be written ({what}): {folder} {problem}")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=folder)
    except OSError as exc:
        raise InputError(
            path, f"cannot be written ({what}): {os_problem(exc)} in {folder}"
        ) from None
    os.close(fd)
    os.unlink(probe)
    free = shutil.disk_usage(folder).free
    if free < needed_bytes:
        raise InputError(
            path,
            f"cannot be written ({what}): {folder} has {_mib(free)} free, "
            f"about {_mib(needed_bytes)} are needed",
        )
    return path


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def resource_error(exc: BaseException) -> XrmError | None:
    """``exc`` as a user error if it is a full disk, a read-only or forbidden path
    or a lack of memory; None for anything else."""
    if out_of_memory(exc):
        return XrmError(
            "Out of memory: use smaller batches or crops, a lower --max-memory, "
            "or close other programs."
        )
    if not isinstance(exc, OSError) or exc.errno not in OS_PROBLEMS:
        return None
    if exc.filename is None:
        return XrmError(f"A file cannot be written: {os_problem(exc)}.")
    return InputError(final_path(exc.filename), os_problem(exc))

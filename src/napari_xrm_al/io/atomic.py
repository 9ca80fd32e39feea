"""Atomic writes: a result appears under its final name complete, or not at all.

Everything is first written to a hidden temporary sibling (same directory, so the
final rename never crosses a file system), flushed to disk and then renamed into
place. A crash part-way leaves at most a hidden
``.<name>.tmp-<pid>-<host>-<uuid>`` sibling; the final name holds either the old
result or the new one. The writer's process id and (hashed) host name in every
temporary name let :func:`remove_stale_temps` tell a leftover of a dead process
from the work of a live one.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import uuid
import weakref
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

#: Temporary names: ``.<final>.<tag>-<pid>-<host>-<uuid>``; ``tmp`` holds a new
#: result being written, ``old`` a previous directory moved aside for a moment.
#: Names without ``<host>`` were written by earlier versions on this host.
_TEMP_NAME = re.compile(
    r"\.(?P<final>.+)\.(?P<tag>tmp|old)-(?P<pid>\d+)-(?:(?P<host>[0-9a-f]{8})-)?"
    r"[0-9a-f]{8}"
)

log = logging.getLogger(__name__)


def host_tag() -> str:
    """This host in temporary names: 8 hex digits of its name's CRC-32."""
    return f"{zlib.crc32(socket.gethostname().encode()):08x}"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def temp_sibling(final: Path, tag: str = "tmp") -> Path:
    """A fresh hidden path next to ``final``, e.g. ``.m.zarr.tmp-123-0a1b2c3d-ab12cd34``."""
    return final.with_name(
        f".{final.name}.{tag}-{os.getpid()}-{host_tag()}-{uuid.uuid4().hex[:8]}"
    )


def remove_stale_temps(folder: Path | str, final_name: str | None = None) -> list[Path]:
    """Clear the temporary siblings in ``folder`` left by processes that died.

    Only names made by :func:`temp_sibling` on this host whose process no longer
    runs are touched (those of ``final_name`` only, when given); a live
    writer's are never. A previous directory moved aside (``old``) whose final
    name is missing, because its writer died between the two renames, is put
    back; every other leftover is deleted.

    Returns
    -------
    list of Path
        The leftovers removed or put back.
    """
    folder = Path(folder)
    prefix = "." if final_name is None else f".{final_name}."
    try:
        names = [e.name for e in os.scandir(folder) if e.name.startswith(prefix)]
    except OSError:  # missing or unreadable folder: nothing of ours to clear
        return []
    cleared = []
    for name in names:
        match = _TEMP_NAME.fullmatch(name)
        if match is None or (final_name and match["final"] != final_name):
            continue
        if match["host"] not in (None, host_tag()) or pid_alive(int(match["pid"])):
            continue
        path, final = folder / name, folder / match["final"]
        try:
            if match["tag"] == "old" and not final.exists():
                os.replace(path, final)
                log.warning(
                    "Restored %s from %s, left by a writer that died", final, path
                )
            else:
                _remove(path)
        except OSError as exc:  # e.g. a read-only folder: left for a later try
            log.warning("Could not clear %s, left by a writer that died: %s", path, exc)
            continue
        cleared.append(path)
    return cleared


def final_path(path: Path | str) -> Path:
    """The result ``path`` is part of: inside a temporary sibling → its final name."""
    path = Path(path)
    for i, part in enumerate(path.parts):
        match = _TEMP_NAME.fullmatch(part)
        if match:
            return Path(*path.parts[:i], match["final"])
    return path


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _fsync_file(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some platforms refuse fsync on read-only descriptors
        pass
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    """Flush every file and folder below ``path`` (a file or a directory)."""
    if not path.is_dir():
        _fsync_file(path)
        return
    for folder, _, files in os.walk(path):
        for name in files:
            _fsync_file(Path(folder, name))
        _fsync_file(Path(folder))


class AtomicTarget:
    """A temporary sibling that becomes ``final`` on :meth:`commit`.

    Use :func:`atomic_path` when the write fits in a ``with`` block; use this
    class when committing happens later (e.g. a streaming writer). A target that
    is garbage-collected without being committed removes its temporary path.

    Parameters
    ----------
    final
        Where the result must end up.
    is_dir
        Whether the result is a directory (e.g. a zarr store).
    """

    def __init__(self, final: Path | str, *, is_dir: bool = False) -> None:
        self.final = Path(final).absolute()
        self.is_dir = is_dir
        remove_stale_temps(self.final.parent, self.final.name)
        self.tmp = temp_sibling(self.final)
        self.done = False
        self._cleanup = weakref.finalize(self, _remove, self.tmp)

    def commit(self) -> Path:
        """Flush the temporary path to disk and move it to the final name."""
        if self.done:
            raise RuntimeError(f"{self.final} was already committed or aborted.")
        if not self.tmp.exists():
            raise RuntimeError(f"Nothing was written to {self.tmp} for {self.final}.")
        _fsync_tree(self.tmp)
        if self.final.exists() and (self.is_dir or self.final.is_dir()):
            # Directories cannot be replaced in one step: the old one is renamed
            # aside and only deleted once the new one is in place.
            aside = temp_sibling(self.final, "old")
            os.replace(self.final, aside)
            try:
                os.replace(self.tmp, self.final)
            except BaseException:
                os.replace(aside, self.final)
                raise
            _remove(aside)
        else:
            os.replace(self.tmp, self.final)
        _fsync_file(self.final.parent)
        self.done = True
        self._cleanup.detach()
        return self.final

    def abort(self) -> None:
        """Remove the temporary path; the final name is left as it was."""
        self.done = True
        self._cleanup()


@contextmanager
def atomic_path(final: Path | str, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``final`` that replaces it on normal exit.

    On an exception the temporary path is removed and ``final`` is untouched.

    Examples
    --------
    >>> with atomic_path("mask.zarr", is_dir=True) as tmp:  # doctest: +SKIP
    ...     zarr.create_array(tmp, ...)
    """
    target = AtomicTarget(final, is_dir=is_dir)
    try:
        yield target.tmp
        target.commit()
    except BaseException:
        target.abort()
        raise


def json_default(obj: Any) -> Any:
    """``json.dumps`` fallback for numpy scalars and arrays and paths."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serialisable.")


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (fsync, then rename)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path | str, obj: Any) -> None:
    """Write ``obj`` as indented JSON (key order kept; numpy values allowed)."""
    text = json.dumps(obj, indent=2, default=json_default, ensure_ascii=False)
    atomic_write_text(path, text + "\n")

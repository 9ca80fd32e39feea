"""Atomic writes: a result appears under its final name complete, or not at all.

Everything is first written to a hidden temporary sibling (same directory, so the
final rename never crosses a file system), flushed to disk and then renamed into
place. A crash part-way leaves at most a hidden ``.<name>.tmp-<pid>-<uuid>``
sibling; the final name holds either the old result or the new one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

#: The name :func:`temp_sibling` gives: ``.<final name>.<tag>-<pid>-<8 hex digits>``.
_TEMP_NAME = re.compile(r"^\.(?P<final>.+)\.\w+-\d+-[0-9a-f]{8}$")


def temp_sibling(final: Path, tag: str = "tmp") -> Path:
    """A fresh hidden path next to ``final``, e.g. ``.mask.zarr.tmp-123-ab12cd34``."""
    return final.with_name(f".{final.name}.{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def final_path(path: Path | str) -> Path:
    """The result ``path`` is part of: inside a temporary sibling → its final name."""
    path = Path(path)
    for i, part in enumerate(path.parts):
        match = _TEMP_NAME.match(part)
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

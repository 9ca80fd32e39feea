"""Checks on an input path before anything opens it.

Only regular files (and folders, where a folder is a valid input) are ever
read: opening a named pipe (FIFO) blocks until some other process writes to
it, and a device may never end, so both would hang a command instead of
failing. Every problem is one :class:`~napari_xrm_al.errors.InputError`
naming the path.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from napari_xrm_al.errors import InputError

#: What a non-regular file is, by its ``stat`` mode test.
_SPECIAL_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def refuse_special(path: Path) -> None:
    """:class:`InputError` if ``path`` exists and is neither a regular file
    nor a folder (a FIFO, socket or device); a missing path passes."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # missing or unreachable: the caller's own checks say so
    for is_kind, kind in _SPECIAL_KINDS:
        if is_kind(mode):
            raise InputError(
                path, f"is {kind}, not a regular file; only regular files are read"
            )


def check_input(path: Path) -> None:
    """:class:`InputError` unless ``path`` exists, can be read and is a
    regular file or a folder."""
    try:
        exists = path.exists()
    except PermissionError:
        raise InputError(path, "cannot be read (permission denied)") from None
    except OSError as exc:
        raise InputError(path, f"cannot be accessed ({exc.strerror})") from None
    if not exists:
        raise InputError(path, "does not exist")
    refuse_special(path)
    if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
        raise InputError(path, "cannot be read (permission denied)")

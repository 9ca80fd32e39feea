"""One process at a time on a session folder: the ``session.lock`` file.

Two processes painting or training on the same session would overwrite each
other's slices and cycles, so a session folder is locked by the first process
that opens it. The lock is a small JSON file ``<session>/session.lock`` (pid,
host, time) that its holder keeps open with an exclusive ``fcntl.flock``: the
kernel lets one process at a time hold it, so of several processes opening a
project at once exactly one wins, and the hold ends with the process however it
ends. Inside one process the lock is shared: every :class:`SessionLock` on the
same folder counts as one holder, and the file goes when the last one is
released (or the process exits).

A lock file left by a process that died (a crash, ``kill -9``) is *stale*: no
one holds its ``flock``, and on the same host its pid no longer runs; it is
taken over with no question. A lock written on another host cannot be checked
(network file systems do not all share ``flock``); the message says which host
and how to remove the file by hand.
"""

from __future__ import annotations

import atexit
import datetime as _dt
import fcntl
import json
import logging
import os
import socket
import threading
from pathlib import Path
from typing import Any

from napari_xrm_al.errors import XrmError
from napari_xrm_al.io.atomic import pid_alive

LOCK_FILE = "session.lock"
#: Tries when the lock file is replaced between opening and locking it.
ATTEMPTS = 10

log = logging.getLogger(__name__)

#: Re-entrant: a dropped Session's finalizer may release a lock while the
#: garbage collector runs inside a locked section of this thread.
_guard = threading.RLock()
#: Holders per locked folder in this process.
_holders: dict[Path, int] = {}
#: The open, ``flock``-ed lock file of each folder this process holds.
_files: dict[Path, int] = {}


class SessionLockedError(XrmError):
    """The session folder is open in another process."""


def _host() -> str:
    return socket.gethostname()


def _parse_owner(text: str) -> dict[str, Any] | None:
    try:
        owner = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(owner, dict) or not isinstance(owner.get("pid"), int):
        return None
    return owner


def read_owner(path: Path) -> dict[str, Any] | None:
    """The ``{pid, host, since}`` of a lock file; None if it cannot be parsed."""
    try:
        return _parse_owner(path.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return None


def _held_elsewhere(owner: dict[str, Any] | None) -> bool:
    """Whether the content of a lock file whose ``flock`` we hold names a holder.

    A live pid on this host may be a process that locks without ``flock`` (an
    earlier version); a lock from another host cannot be checked at all.
    """
    if owner is None:  # half-written by a process that died, or garbage
        return False
    if owner.get("host") != _host():
        return True
    return owner["pid"] != os.getpid() and pid_alive(owner["pid"])


def _locked_error(folder: Path, owner: dict[str, Any] | None) -> SessionLockedError:
    owner = owner or {}
    return SessionLockedError(
        f"The session {folder} is open in another napari-xrm-al process "
        f"(pid {owner.get('pid', '?')} on {owner.get('host', '?')} since "
        f"{owner.get('since', '?')}); close it there first, or delete "
        f"{folder / LOCK_FILE} if that process is gone."
    )


def _is_file_at(fd: int, path: Path) -> bool:
    """Whether the open file ``fd`` is the one now at ``path``."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        return False


def _open_locked(path: Path) -> int | None:
    """The lock file at ``path``, opened and ``flock``-ed; None if another holds it.

    Raises
    ------
    SessionLockedError
        When the file keeps being replaced under us.
    """
    for _ in range(ATTEMPTS):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        if _is_file_at(fd, path):
            return fd
        os.close(fd)  # released and deleted by its holder meanwhile: open it anew
    raise SessionLockedError(f"Could not lock the session {path.parent}; try again.")


def _acquire_file(folder: Path) -> int:
    """Lock ``folder`` for this process; the open lock file."""
    path = folder / LOCK_FILE
    fd = _open_locked(path)
    if fd is None:
        raise _locked_error(folder, read_owner(path))
    try:
        with os.fdopen(os.dup(fd), "r+", encoding="utf-8", errors="replace") as fh:
            text = fh.read()
            owner = _parse_owner(text)
            if _held_elsewhere(owner):
                raise _locked_error(folder, owner)
            if text:
                log.warning("Taking over the stale lock %s (%s)", path, owner)
            fh.seek(0)
            fh.truncate()
            json.dump(
                {
                    "pid": os.getpid(),
                    "host": _host(),
                    "since": _dt.datetime.now().isoformat(timespec="seconds"),
                },
                fh,
            )
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        os.close(fd)
        raise
    return fd


class SessionLock:
    """This process's hold on a session folder; :meth:`release` when done.

    Raises
    ------
    SessionLockedError
        When another live process holds the folder.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder).resolve()
        with _guard:
            if _holders.get(self.folder, 0) == 0:
                _files[self.folder] = _acquire_file(self.folder)
            _holders[self.folder] = _holders.get(self.folder, 0) + 1
        self.held = True

    def release(self) -> None:
        """Give up this hold; the file goes with the process's last hold."""
        if not self.held:
            return
        self.held = False
        with _guard:
            count = _holders.get(self.folder, 0) - 1
            if count > 0:
                _holders[self.folder] = count
                return
            _holders.pop(self.folder, None)
            _release_file(self.folder)


def _release_file(folder: Path) -> None:
    """Delete the lock file of ``folder`` (if still the one we lock) and unlock it."""
    fd = _files.pop(folder, None)
    if fd is None:
        return
    path = folder / LOCK_FILE
    if _is_file_at(fd, path):
        path.unlink(missing_ok=True)  # before unlocking: newcomers make a new file
    os.close(fd)


@atexit.register
def _release_all() -> None:
    with _guard:
        for folder in list(_files):
            _release_file(folder)
        _holders.clear()

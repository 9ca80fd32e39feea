"""One process at a time on a session folder: the ``session.lock`` file.

Two processes painting or training on the same session would overwrite each
other's slices and cycles, so a session folder is locked by the first process
that opens it. The lock is a small JSON file ``<session>/session.lock`` (pid, host,
time), created with ``O_CREAT | O_EXCL`` so that only one process can win.
Inside one process the lock is shared: every :class:`SessionLock` on the same
folder counts as one holder, and the file goes when the last one is released
(or the process exits).

A lock left by a process that died (a crash, ``kill -9``) is *stale*: on the
same host its pid no longer runs, and it is taken over with no question. A
lock held by another host cannot be checked; the message says which host and
how to remove the file by hand.
"""

from __future__ import annotations

import atexit
import datetime as _dt
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from napari_xrm_al.errors import XrmError

LOCK_FILE = "session.lock"
#: A lock file with unreadable content younger than this is being written.
FRESH_S = 5.0

log = logging.getLogger(__name__)

_guard = threading.Lock()
#: Holders per locked folder in this process.
_holders: dict[Path, int] = {}


class SessionLockedError(XrmError):
    """The session folder is open in another process."""


def _host() -> str:
    return socket.gethostname()


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


def read_owner(path: Path) -> dict[str, Any] | None:
    """The ``{pid, host, since}`` of a lock file; None if it cannot be parsed."""
    try:
        owner = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(owner, dict) or not isinstance(owner.get("pid"), int):
        return None
    return owner


def _is_stale(path: Path, owner: dict[str, Any] | None) -> bool:
    if owner is None:  # half-written by a process that died, or garbage
        try:
            return time.time() - path.stat().st_mtime > FRESH_S
        except FileNotFoundError:
            return True
    if owner.get("host") != _host():
        return False
    return owner["pid"] != os.getpid() and not pid_alive(owner["pid"])


def _create(path: Path) -> bool:
    """Write our lock file if there is none; whether we did."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    owner = {
        "pid": os.getpid(),
        "host": _host(),
        "since": _dt.datetime.now().isoformat(timespec="seconds"),
    }
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(owner, fh)
        fh.flush()
        os.fsync(fh.fileno())
    return True


def _acquire_file(folder: Path) -> None:
    path = folder / LOCK_FILE
    for _ in range(3):
        if _create(path):
            return
        owner = read_owner(path)
        if owner is not None and (owner["pid"], owner.get("host")) == (
            os.getpid(),
            _host(),
        ):  # left by this process: still ours
            return
        if not _is_stale(path, owner):
            break
        log.warning("Removing the stale lock %s (%s)", path, owner)
        path.unlink(missing_ok=True)
    else:
        raise SessionLockedError(f"Could not lock the session {folder}; try again.")
    owner = owner or {}
    raise SessionLockedError(
        f"The session {folder} is open in another napari-xrm-al process "
        f"(pid {owner.get('pid', '?')} on {owner.get('host', '?')} since "
        f"{owner.get('since', '?')}); close it there first, or delete "
        f"{path} if that process is gone."
    )


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
                _acquire_file(self.folder)
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
            _remove_own(self.folder / LOCK_FILE)


def _remove_own(path: Path) -> None:
    owner = read_owner(path)
    if owner is not None and owner["pid"] == os.getpid() and owner["host"] == _host():
        path.unlink(missing_ok=True)


@atexit.register
def _release_all() -> None:
    with _guard:
        for folder in list(_holders):
            _remove_own(folder / LOCK_FILE)
        _holders.clear()

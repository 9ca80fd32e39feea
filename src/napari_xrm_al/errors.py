"""User-facing errors.

Every problem a user can cause (a bad file, a wrong option, a checkpoint that
does not fit) is raised as an :class:`XrmError` whose message is one clear
sentence naming the file and the problem. The CLI prints that sentence and
exits non-zero; the widgets show it as a napari notification. Running out of
disk, memory or permission is the user's to fix too:
:func:`napari_xrm_al.io.output_paths.resource_error` describes it in one
sentence. Anything else is a bug and is reported as such.
"""

from __future__ import annotations

import errno
from os import PathLike

#: What went wrong, by errno, for the failures a user can fix.
OS_PROBLEMS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


class XrmError(Exception):
    """A problem the user can fix, described in one sentence."""


class InputError(XrmError):
    """A file or folder that cannot be used as asked.

    Parameters
    ----------
    path
        The offending file or folder.
    problem
        What is wrong with it, as the end of a sentence
        (e.g. ``"is empty (0 bytes)"``).
    """

    def __init__(self, path: str | PathLike[str], problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def mib(n_bytes: float) -> str:
    """``n_bytes`` in MiB or GiB, for the figures in error messages."""
    return (
        f"{n_bytes / 2**30:.1f} GiB"
        if n_bytes >= 2**30
        else f"{n_bytes / 2**20:.0f} MiB"
    )


def os_problem(exc: OSError) -> str:
    """What an :class:`OSError` says, in words (e.g. ``"no space left on the device"``)."""
    return OS_PROBLEMS.get(exc.errno or 0) or (exc.strerror or str(exc)).lower()


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says the machine (or the GPU) ran out of memory."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )

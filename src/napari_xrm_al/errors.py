"""User-facing errors.

Every problem a user can cause (a bad file, a wrong option, a checkpoint that
does not fit) is raised as an :class:`XrmError` whose message is one clear
sentence naming the file and the problem. The CLI prints that sentence and
exits non-zero; the widgets show it as a napari notification. Anything else
is a bug and is reported as such.
"""

from __future__ import annotations

from os import PathLike


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

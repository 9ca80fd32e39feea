"""Paths recorded in a session: inside the project, or refused.

``session.json`` records its models relative to the project folder. A path
there that leads outside the project (absolute, through ``..`` or a link)
is dropped on loading with a warning, the way other damage is met, so that no
command uses a file that is not the project's. The project's own folders
(``models/``, ``cache/``) may themselves be links to folders elsewhere (a
bigger disk): they are resolved once, when the session is opened.

:class:`ProjectPaths` maps between recorded paths and files; a
:class:`~napari_xrm_al.core.session.session.Session` holds one (``session.paths``).
"""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from napari_xrm_al.core.session.schema import CycleRecord
from napari_xrm_al.errors import InputError, XrmError

SESSION_FILE = "session.json"
#: The project's own folders; each may be a link to a folder elsewhere.
MODELS, CACHE = "models", "cache"

log = logging.getLogger(__name__)


def own_folders(folder: Path) -> list[tuple[Path, str]]:
    """Where the project's folders really are, most specific first, with their names."""
    return [((folder / name).resolve(), name) for name in (MODELS, CACHE, "")]


class ProjectPaths:
    """Map between the paths ``session.json`` records and the project's files.

    Parameters
    ----------
    folder
        The project folder; its own folders are resolved once, here.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._own_folders = own_folders(folder)

    def path_of(self, relative: str | None) -> Path | None:
        """Absolute path of a file recorded relative to the session folder.

        Raises
        ------
        InputError
            When ``relative`` leads outside the project.
        """
        if relative is None:
            return None
        problem = self.outside(relative)
        if problem is not None:
            raise InputError(self.folder / SESSION_FILE, problem)
        return self.folder / relative

    def _inside(self, path: Path) -> str | None:
        """``path`` relative to the project, through its (linked) folders; None if outside."""
        resolved = path.resolve()
        for root, name in self._own_folders:
            if resolved.is_relative_to(root):
                return PurePosixPath(name, resolved.relative_to(root)).as_posix()
        return None

    def outside(self, entry: Any) -> str | None:
        """Why a path recorded in ``session.json`` leads outside the project, or None."""
        if not isinstance(entry, str) or not entry:
            return f"records the path {entry!r}, which is not a file name"
        lexical = PureWindowsPath(entry)  # splits on both / and \
        if (
            PurePosixPath(entry).is_absolute()
            or lexical.anchor
            or ".." in lexical.parts
        ):
            return f"records the path {entry!r}, which is not inside the project"
        if self._inside(self.folder / entry) is None:
            return f"records the path {entry!r}, which links outside the project"
        return None

    def model_path(self, name: str) -> Path:
        """Where a model checkpoint called ``name`` lives in this session."""
        return self.folder / MODELS / name

    def relative(self, path: str | Path) -> str:
        """``path`` relative to the session folder, for storing in ``session.json``.

        Raises
        ------
        XrmError
            When ``path`` is outside the project.
        """
        relative = self._inside(Path(path))
        if relative is None:
            raise XrmError(f"{path} is outside the project {self.folder}.")
        return relative


def drop_paths_outside(
    paths: ProjectPaths, cycles: list[CycleRecord], pretrained: str | None
) -> tuple[str | None, list[str]]:
    """Forget recorded models that lead outside the project.

    Each cycle whose model does is left without one; returns the pretrained
    encoder's path (None if it did) and the warnings.
    """
    where = paths.folder / SESSION_FILE
    warnings = []
    for record in cycles:
        problem = None if record.model is None else paths.outside(record.model)
        if problem is not None:
            record.model = None
            warnings.append(
                f"{where} {problem}: the model of cycle {record.cycle} is ignored; "
                "train again for a new one."
            )
    problem = None if pretrained is None else paths.outside(pretrained)
    if problem is not None:
        pretrained = None
        warnings.append(
            f"{where} {problem}: the pretrained encoder is ignored; pretrain again "
            "for a new one."
        )
    for message in warnings:
        log.warning(message)
    return pretrained, warnings

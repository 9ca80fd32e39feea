"""The active-learning session: the state of one analysis, on disk.

A session lives in a project folder beside the data (``<scan>.xrmal/``)::

    session.json        image reference, class table, axis, done slices, cycles
    annotations.zarr    uint8/uint16 annotation ids (0 = not annotated), one chunk per
                        slice along the session axis
    models/             pretrained encoder and one trained model per cycle
    cache/              per-slice prediction summaries, keyed by model

``session.json`` is versioned (:mod:`~napari_xrm_al.core.session.schema`) and written atomically,
so the folder always reopens exactly where the user stopped. The widgets and
the command line both use this class.

Crash safety (see ``docs/reliability.md``):

* ``session.json.bak`` holds the previous version of ``session.json``; a
  damaged ``session.json`` is reopened from it with a warning.
* Each annotation slice is one chunk file, which zarr writes to a temporary
  file and renames into place; a chunk damaged all the same (disk, copy) is
  set aside on reopening, losing only that slice.
* A damaged model checkpoint makes :attr:`Session.latest_model` fall back to
  the previous cycle's model, with a warning.
* ``session.lock`` keeps a second process off the folder
  (:mod:`napari_xrm_al.core.session.lock`).
"""

from __future__ import annotations

import json
import logging
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from napari_xrm_al import __version__
from napari_xrm_al.classes import ClassTable
from napari_xrm_al.core.session import schema
from napari_xrm_al.core.session.annotations import (
    PENDING,
    AnnotationStore,
    create_annotation_volume,
    recover_annotation_volume,
)
from napari_xrm_al.core.session.lock import SessionLock
from napari_xrm_al.core.session.model_checks import CheckpointChecks, skipped_models
from napari_xrm_al.core.session.paths import (
    CACHE,
    MODELS,
    SESSION_FILE,
    ProjectPaths,
    drop_paths_outside,
)
from napari_xrm_al.core.session.schema import (
    CycleRecord,
    ImageRef,
    NewerSessionError,
    SuggestionRecord,
)
from napari_xrm_al.core.slice_refs import SliceRef, as_ref, as_refs, check_in_volume
from napari_xrm_al.core.slices import axis_index
from napari_xrm_al.errors import InputError, XrmError
from napari_xrm_al.io.atomic import atomic_write_text, json_default, remove_stale_temps

#: The previous version of ``session.json``, kept for when it is damaged.
BACKUP_FILE = "session.json.bak"
SUFFIX = ".xrmal"

log = logging.getLogger(__name__)


def default_session_dir(image_path: str | Path) -> Path:
    """The project folder beside an image: ``scan.tif`` → ``scan.tif.xrmal``."""
    path = Path(image_path)
    return path.with_name(path.name.rstrip("/") + SUFFIX)


class Session:
    """An open active-learning session folder.

    Use :meth:`create` or :meth:`open`; every mutating method saves at once.
    The annotation volume is :attr:`annotations` (an
    :class:`~napari_xrm_al.core.session.annotations.AnnotationStore`), the
    mapping of recorded paths :attr:`paths` (a
    :class:`~napari_xrm_al.core.session.paths.ProjectPaths`).
    """

    def __init__(
        self,
        folder: Path,
        image: ImageRef,
        classes: ClassTable,
        axis: str,
        *,
        done: Iterable[SliceRef | int | Sequence[Any]] = (),
        pretrained: str | None = None,
        cycles: Sequence[CycleRecord] = (),
        suggestion: SuggestionRecord | None = None,
        created: str | None = None,
    ) -> None:
        self.folder = Path(folder)
        #: Recorded paths ↔ the project's files.
        self.paths = ProjectPaths(self.folder)
        self.image = image
        self.classes = classes
        self.axis = axis
        #: The slices marked done, along any axis, sorted.
        self.done: list[SliceRef] = as_refs(done, axis)
        self.pretrained = pretrained
        self.cycles: list[CycleRecord] = list(cycles)
        #: The latest suggestion, until a cycle trains on it.
        self.suggestion = suggestion
        self.created = created or schema.now()
        #: Things the user should be told (damaged files recovered from).
        self.warnings: list[str] = []
        #: The painted annotations, slice by slice.
        self.annotations = AnnotationStore(
            self.folder,
            image.shape,
            axis,
            len(classes),
            self.warnings,
            self._forget_lost_slice,
        )
        self._saved_text: str | None = None
        self._checkpoints = CheckpointChecks()
        self._lock: SessionLock | None = None

    def _hold(self, lock: SessionLock) -> None:
        self._lock = lock
        weakref.finalize(self, lock.release)

    def close(self) -> None:
        """Release this object's hold on the folder lock (it stays readable)."""
        if self._lock is not None:
            self._lock.release()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def exists(folder: str | Path) -> bool:
        """Whether ``folder`` holds a session (even one to recover from its backup)."""
        folder = Path(folder)
        return (folder / SESSION_FILE).is_file() or (folder / BACKUP_FILE).is_file()

    # -- creation and loading ---------------------------------------------
    @classmethod
    def create(
        cls,
        folder: str | Path,
        image: ImageRef,
        classes: ClassTable,
        axis: str = "z",
        *,
        overwrite: bool = False,
    ) -> Session:
        """Make a new session folder with an empty annotation volume."""
        folder = Path(folder)
        if cls.exists(folder) and not overwrite:
            raise InputError(folder, "already holds a session; open it instead")
        ax = axis_index(axis)
        folder.mkdir(parents=True, exist_ok=True)
        return cls._locked(folder, lambda: cls._create(folder, image, classes, ax))

    @classmethod
    def _create(
        cls, folder: Path, image: ImageRef, classes: ClassTable, ax: int
    ) -> Session:
        (folder / BACKUP_FILE).unlink(missing_ok=True)
        (folder / MODELS).mkdir(exist_ok=True)
        create_annotation_volume(folder, image.shape, ax, len(classes))
        session = cls(folder, image, classes, "zyx"[ax])
        session.save()
        return session

    @classmethod
    def open(cls, folder: str | Path) -> Session:
        """Reopen a session folder; clear errors for anything missing or foreign.

        A damaged ``session.json`` is replaced by its backup (the state before
        the last change), with a message in :attr:`warnings`.

        Raises
        ------
        SessionLockedError
            When another process has the folder open.
        """
        folder = Path(folder)
        if not cls.exists(folder):
            raise InputError(
                folder, "is not a napari-xrm-al session folder (no session.json)"
            )
        return cls._locked(folder, lambda: cls._open(folder))

    @staticmethod
    def _locked(folder: Path, build: Callable[[], Session]) -> Session:
        """``build()`` the session while holding the folder's lock, which it keeps."""
        lock = SessionLock(folder)
        try:
            for part in (folder, folder / MODELS, folder / CACHE, folder / PENDING):
                remove_stale_temps(part)  # left by a process that was killed
            session = build()
        except BaseException:
            lock.release()
            raise
        session._hold(lock)
        return session

    @classmethod
    def _open(cls, folder: Path) -> Session:
        path, warnings = folder / SESSION_FILE, []
        try:
            session = cls._from_file(folder, path)
        except NewerSessionError:
            raise
        except InputError as exc:
            if not (folder / BACKUP_FILE).is_file():
                raise
            try:
                session = cls._from_file(folder, folder / BACKUP_FILE)
            except InputError:
                raise exc from None
            warnings.append(
                f"{path} was damaged ({exc.problem}); the session was reopened "
                "from its backup, as it was before the last change."
            )
            log.warning(warnings[-1])
            session.save()
        recover_annotation_volume(folder)
        session.annotations.replay_pending()
        session.pretrained, dropped = drop_paths_outside(
            session.paths, session.cycles, session.pretrained
        )
        warnings += dropped
        session.warnings[:0] = warnings
        session.latest_model  # noqa: B018 (checks the models, noting damaged ones)
        return session

    @classmethod
    def _from_file(cls, folder: Path, path: Path) -> Session:
        data, text = schema.read_document(path)
        try:
            image = ImageRef(
                **{**data["image"], "shape": tuple(data["image"]["shape"])}
            )
            session = cls(
                folder,
                image,
                ClassTable.from_dict(data["classes"]),
                data["axis"],
                done=data.get("done", []),
                pretrained=data.get("pretrained"),
                cycles=[CycleRecord(**c) for c in data.get("cycles", [])],
                suggestion=(
                    SuggestionRecord(**data["suggestion"])
                    if data.get("suggestion") is not None
                    else None
                ),
                created=data.get("created"),
            )
        except (KeyError, TypeError, ValueError, XrmError) as exc:
            raise InputError(
                path, f"is missing or has a malformed field ({exc})"
            ) from None
        session._saved_text = text
        return session

    def to_dict(self) -> dict[str, Any]:
        """The JSON document written to ``session.json``."""
        return {
            "schema_version": schema.SCHEMA_VERSION,
            "written_by": f"napari-xrm-al {__version__}",
            "created": self.created,
            "modified": schema.now(),
            "image": {**asdict(self.image), "shape": list(self.image.shape)},
            "classes": self.classes.to_dict(),
            "axis": self.axis,
            "done": [ref.pair() for ref in self.done],
            "pretrained": self.pretrained,
            "cycles": [asdict(c) for c in self.cycles],
            "suggestion": asdict(self.suggestion) if self.suggestion else None,
        }

    def save(self) -> None:
        """Write ``session.json`` atomically, keeping the previous one as backup."""
        text = json.dumps(
            self.to_dict(), indent=2, default=json_default, ensure_ascii=False
        )
        text += "\n"
        if self._saved_text is not None:
            atomic_write_text(self.folder / BACKUP_FILE, self._saved_text)
        atomic_write_text(self.folder / SESSION_FILE, text)
        self._saved_text = text

    # -- bookkeeping ---------------------------------------------------------
    def ref(self, item: SliceRef | int) -> SliceRef:
        """``item`` as a :class:`SliceRef`: a plain index is along the session axis."""
        return as_ref(item, self.axis)

    def is_done(self, item: SliceRef | int) -> bool:
        """Whether the slice (a plain index: along the session axis) is done."""
        return self.ref(item) in self.done

    def done_along(self, axis: str | int | None = None) -> list[int]:
        """Indices of the done slices along ``axis`` (default: the session axis)."""
        ax = axis_index(self.axis if axis is None else axis)
        return [ref.index for ref in self.done if ref.axis == ax]

    def mark_done(self, item: SliceRef | int, done: bool = True) -> None:
        """Mark a slice (a plain index: along the session axis) as labelled
        (or not) and save."""
        ref = self.ref(item)
        check_in_volume([ref], self.image.shape)
        items = set(self.done)
        (items.add if done else items.discard)(ref)
        self.done = sorted(items)
        self.save()

    def set_pretrained(self, path: str | Path) -> None:
        """Record the pretrained encoder checkpoint and save."""
        self.pretrained = self.paths.relative(path)
        self.save()

    def labelled_counts(self) -> np.ndarray:
        """``(C,)`` annotated pixels per class over the slices marked done."""
        counts = np.zeros(len(self.classes) + 1, dtype=np.int64)
        for ref in self.done:
            values = self.annotations.read_slice(ref)
            counts += np.bincount(values.ravel(), minlength=len(counts))[: len(counts)]
        return counts[1:]

    def _forget_lost_slice(self, index: int) -> bool:
        """A slice along the project axis lost its paint: no longer done; whether it was."""
        was_done = self.is_done(index)
        if was_done:
            self.mark_done(index, False)
        return was_done

    def add_cycle(self, record: CycleRecord) -> None:
        """Append a finished cycle (which used up the suggestion) and save."""
        self.cycles.append(record)
        self.suggestion = None
        self.save()

    def record_suggestion(self, record: SuggestionRecord | None) -> None:
        """Keep ``record`` as the latest suggestion (None: forget it) and save."""
        self.suggestion = record
        self.save()

    def provenance(self) -> dict[str, Any]:
        """What every model and prediction of this project records of it."""
        return {
            "image_path": self.image.path,
            "image_shape": list(self.image.shape),
            "image_fingerprint": self.image.fingerprint,
            "session": str(self.folder),
        }

    @property
    def latest_model(self) -> Path | None:
        """The model of the most recent cycle whose checkpoint can be loaded.

        A missing or damaged checkpoint is skipped for the previous cycle's,
        with a message in :attr:`warnings` (once per file).
        """
        skipped: list[tuple[CycleRecord, str]] = []
        for record in reversed(self.cycles):
            if not record.model:
                continue
            path = self.folder / record.model  # checked on loading: inside
            problem = self._checkpoints.problem(path)
            if problem is None:
                self._warn(skipped_models(skipped, record))
                return path
            skipped.append((record, problem))
        self._warn(skipped_models(skipped, None))
        return None

    def model_settings(self, path: Path) -> dict[str, Any] | None:
        """The training settings the model at ``path`` records (None: none, or
        it cannot be used); read when the model was checked, not again."""
        return self._checkpoints.settings(path)

    def _warn(self, messages: list[str]) -> None:
        """Tell the user each of ``messages`` once (:attr:`warnings` and the log)."""
        for message in messages:
            if message not in self.warnings:
                self.warnings.append(message)
                log.warning(message)

    def check_image(self, shape: Sequence[int], fingerprint: str) -> list[str]:
        """Warnings when the image on disk is not the one the session was made for."""
        warnings = []
        if tuple(shape) != tuple(self.image.shape):
            raise InputError(
                self.image.path,
                f"has shape {tuple(shape)} but the session {self.folder} was made for "
                f"{tuple(self.image.shape)}",
            )
        if fingerprint != self.image.fingerprint:
            warnings.append(
                f"{self.image.path} has changed on disk since the session was made "
                "(content fingerprint differs); check it is the same scan."
            )
        return warnings

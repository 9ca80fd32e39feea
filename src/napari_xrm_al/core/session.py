"""The active-learning session: the state of one analysis, on disk.

A session lives in a project folder beside the data (``<scan>.xrmal/``)::

    session.json        image reference, class table, axis, done slices, cycles
    annotations.zarr    uint8/uint16 annotation ids (0 = not annotated), one chunk per slice
    models/             pretrained encoder and one trained model per cycle
    cache/              per-slice prediction summaries, keyed by model

``session.json`` is versioned (:data:`SCHEMA_VERSION`) and written atomically,
so the folder always reopens exactly where the user stopped. The widgets and
the command line both use this class.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from napari_xrm_al import __version__
from napari_xrm_al.core.classes import ClassTable
from napari_xrm_al.core.slices import axis_index
from napari_xrm_al.errors import InputError, XrmError
from napari_xrm_al.io.atomic import atomic_write_json

SCHEMA_VERSION = 1
SESSION_FILE = "session.json"
ANNOTATIONS = "annotations.zarr"
SUFFIX = ".xrmal"


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def default_session_dir(image_path: str | Path) -> Path:
    """The project folder beside an image: ``scan.tif`` → ``scan.tif.xrmal``."""
    path = Path(image_path)
    return path.with_name(path.name.rstrip("/") + SUFFIX)


@dataclass(frozen=True)
class ImageRef:
    """Which scan a session belongs to."""

    path: str
    shape: tuple[int, int, int]
    dtype: str
    fingerprint: str


@dataclass
class CycleRecord:
    """One active-learning cycle: what was picked, trained and measured."""

    cycle: int
    strategy: str
    labelled: list[int]
    picks: list[dict[str, Any]] = field(default_factory=list)
    model: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    created: str = field(default_factory=_now)


def _migrate(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """Bring an older ``session.json`` up to :data:`SCHEMA_VERSION`."""
    version = data.get("schema_version")
    if not isinstance(version, int):
        raise InputError(
            path, "is not a napari-xrm-al session file (no schema_version)"
        )
    if version > SCHEMA_VERSION:
        raise InputError(
            path,
            f"was written by a newer napari-xrm-al (session schema {version}, this "
            f"version {__version__} reads up to {SCHEMA_VERSION}); update the plugin",
        )
    # Future schema changes add a step here: ``if version == 1: ...; version = 2``.
    return data


class Session:
    """An open active-learning session folder.

    Use :meth:`create` or :meth:`open`; every mutating method saves at once.
    """

    def __init__(
        self,
        folder: Path,
        image: ImageRef,
        classes: ClassTable,
        axis: str,
        *,
        done: Sequence[int] = (),
        pretrained: str | None = None,
        cycles: Sequence[CycleRecord] = (),
        created: str | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.image = image
        self.classes = classes
        self.axis = axis
        self.done: list[int] = sorted({int(i) for i in done})
        self.pretrained = pretrained
        self.cycles: list[CycleRecord] = list(cycles)
        self.created = created or _now()
        self._annotations: zarr.Array | None = None

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
        if (folder / SESSION_FILE).exists() and not overwrite:
            raise InputError(folder, "already holds a session; open it instead")
        ax = axis_index(axis)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "models").mkdir(exist_ok=True)
        chunks = list(image.shape)
        chunks[ax] = 1
        zarr.create_array(
            folder / ANNOTATIONS,
            shape=image.shape,
            chunks=tuple(chunks),
            dtype=np.uint8 if len(classes) < 255 else np.uint16,
            fill_value=0,
            dimension_names=("z", "y", "x"),
            overwrite=True,
        )
        session = cls(folder, image, classes, "zyx"[ax])
        session.save()
        return session

    @classmethod
    def open(cls, folder: str | Path) -> Session:
        """Reopen a session folder; clear errors for anything missing or foreign."""
        folder = Path(folder)
        path = folder / SESSION_FILE
        if not path.is_file():
            raise InputError(
                folder, "is not a napari-xrm-al session folder (no session.json)"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(
                path, f"cannot be read as a session file ({exc})"
            ) from None
        data = _migrate(data, path)
        if not (folder / ANNOTATIONS).exists():
            raise InputError(folder, f"has lost its annotation volume ({ANNOTATIONS})")
        try:
            image = ImageRef(
                **{**data["image"], "shape": tuple(data["image"]["shape"])}
            )
            return cls(
                folder,
                image,
                ClassTable.from_dict(data["classes"]),
                data["axis"],
                done=data.get("done", []),
                pretrained=data.get("pretrained"),
                cycles=[CycleRecord(**c) for c in data.get("cycles", [])],
                created=data.get("created"),
            )
        except (KeyError, TypeError) as exc:
            raise InputError(
                path, f"is missing or has a malformed field ({exc})"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        """The JSON document written to ``session.json``."""
        return {
            "schema_version": SCHEMA_VERSION,
            "written_by": f"napari-xrm-al {__version__}",
            "created": self.created,
            "modified": _now(),
            "image": {**asdict(self.image), "shape": list(self.image.shape)},
            "classes": self.classes.to_dict(),
            "axis": self.axis,
            "done": self.done,
            "pretrained": self.pretrained,
            "cycles": [asdict(c) for c in self.cycles],
        }

    def save(self) -> None:
        """Write ``session.json`` atomically."""
        atomic_write_json(self.folder / SESSION_FILE, self.to_dict())

    # -- annotations -------------------------------------------------------
    @property
    def annotations(self) -> zarr.Array:
        """The annotation volume, opened for reading and writing."""
        if self._annotations is None:
            self._annotations = zarr.open_array(self.folder / ANNOTATIONS, mode="r+")
        return self._annotations

    def slice_key(self, index: int) -> tuple[slice | int, ...]:
        """Numpy key selecting slice ``index`` along the session axis."""
        key: list[slice | int] = [slice(None)] * 3
        key[axis_index(self.axis)] = int(index)
        return tuple(key)

    def read_slice(self, index: int) -> np.ndarray:
        """Annotation ids of one slice."""
        return np.asarray(self.annotations[self.slice_key(index)])

    def write_slice(self, index: int, values: np.ndarray) -> None:
        """Store the annotation of one slice (values outside 0..C rejected)."""
        values = np.asarray(values)
        if values.size and (values.min() < 0 or values.max() > len(self.classes)):
            raise XrmError(
                f"Annotation values must be 0 (not annotated) or 1..{len(self.classes)}; "
                f"got {int(values.min())}..{int(values.max())}."
            )
        self.annotations[self.slice_key(index)] = values.astype(self.annotations.dtype)

    def annotated_slices(self) -> list[int]:
        """Slices holding any annotated pixel (done or not)."""
        ax = axis_index(self.axis)
        counts = np.zeros(self.image.shape[ax], dtype=np.int64)
        for i in range(len(counts)):
            counts[i] = np.count_nonzero(self.read_slice(i))
        return [int(i) for i in np.flatnonzero(counts)]

    def labelled_counts(self) -> np.ndarray:
        """``(C,)`` annotated pixels per class over the slices marked done."""
        counts = np.zeros(len(self.classes) + 1, dtype=np.int64)
        for i in self.done:
            values = self.read_slice(i)
            counts += np.bincount(values.ravel(), minlength=len(counts))[: len(counts)]
        return counts[1:]

    # -- bookkeeping ---------------------------------------------------------
    def mark_done(self, index: int, done: bool = True) -> None:
        """Mark a slice as labelled (or not) and save."""
        n = self.image.shape[axis_index(self.axis)]
        if not 0 <= index < n:
            raise XrmError(
                f"Slice {index} is outside the volume's {n} slices along {self.axis}."
            )
        items = set(self.done)
        (items.add if done else items.discard)(int(index))
        self.done = sorted(items)
        self.save()

    def path_of(self, relative: str | None) -> Path | None:
        """Absolute path of a file recorded relative to the session folder."""
        return None if relative is None else self.folder / relative

    def model_path(self, name: str) -> Path:
        """Where a model checkpoint called ``name`` lives in this session."""
        return self.folder / "models" / name

    def relative(self, path: str | Path) -> str:
        """``path`` relative to the session folder, for storing in ``session.json``."""
        return Path(path).resolve().relative_to(self.folder.resolve()).as_posix()

    def set_pretrained(self, path: str | Path) -> None:
        """Record the pretrained encoder checkpoint and save."""
        self.pretrained = self.relative(path)
        self.save()

    def add_cycle(self, record: CycleRecord) -> None:
        """Append a finished cycle and save."""
        self.cycles.append(record)
        self.save()

    @property
    def latest_model(self) -> Path | None:
        """The model of the most recent cycle that trained one."""
        for record in reversed(self.cycles):
            if record.model:
                return self.path_of(record.model)
        return None

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

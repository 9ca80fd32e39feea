"""Checkpoints: trained weights with everything needed to use them again.

A checkpoint is one ``torch.save`` file (loaded with ``weights_only=True``, so
opening an untrusted file cannot run code) holding a format tag and version,
the model configuration, the weights, the intensity normalisation, the slice
axis, the class table (segmenters) and provenance. Files are written to a
temporary sibling and renamed into place, so a crash or a cancelled run never
leaves a half-written checkpoint; a trained model that cannot be written where
asked is kept elsewhere (:func:`save_or_keep`). A segmenter's network is
built from its checkpoint by :class:`~napari_xrm_al.core.inference.segmenter.Segmenter`.
"""

from __future__ import annotations

import datetime as _dt
import io
import os
import pickle
import platform
import tempfile
import time
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_xrm_al.classes import ClassTable
from napari_xrm_al.core.model.network import ModelConfig
from napari_xrm_al.core.model.normalization import Normalisation
from napari_xrm_al.core.slices import axis_name
from napari_xrm_al.errors import InputError, XrmError, os_problem
from napari_xrm_al.io.atomic import atomic_write_bytes
from napari_xrm_al.io.input_paths import check_input

FORMAT = "napari-xrm-al-checkpoint"
FORMAT_VERSION = 1
KINDS = ("encoder", "segmenter")


@dataclass
class Checkpoint:
    """Everything a trained (or pretrained) model needs to be used again.

    Parameters
    ----------
    kind
        ``'encoder'`` (from pretraining) or ``'segmenter'`` (trained model).
    model_config
        Architecture.
    state_dict
        Encoder weights (``'encoder'``) or the whole model (``'segmenter'``).
    normalisation
        Intensity normalisation fitted on the training volume.
    axis
        Slice axis, ``'z'``, ``'y'`` or ``'x'``: the one plain slice indices
        are along (the session's); the training slices may lie along others
        (:attr:`trained_axes`).
    classes
        Class table (segmenters only).
    provenance
        Volume path, shape, fingerprint, date, package versions, ...
    history
        Losses, metrics and timings of the run that made it.
    """

    kind: str
    model_config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    normalisation: Normalisation
    axis: str = "z"
    classes: ClassTable | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    history: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise XrmError(f"Unknown checkpoint kind {self.kind!r}; expected {KINDS}.")
        self.axis = axis_name(self.axis)
        if self.kind == "segmenter":
            if self.classes is None:
                raise XrmError("A segmenter checkpoint needs a class table.")
            if len(self.classes) != self.model_config.n_classes:
                raise XrmError(
                    f"The class table has {len(self.classes)} classes but the model "
                    f"predicts {self.model_config.n_classes}."
                )

    @property
    def settings(self) -> dict[str, Any] | None:
        """The training or pretraining settings its history records (nested
        ones as dicts), or None where it records none (an older file)."""
        config = self.history.get("config")
        return config if isinstance(config, dict) else None

    @property
    def trained_axes(self) -> tuple[str, ...]:
        """Axes of the slices it was trained on, most slices first (ties:
        :attr:`axis` first, then z, y, x); ``(axis,)`` when its history does
        not list them (an encoder, an older file). A slice recorded as a bare
        index is along :attr:`axis`."""
        counts = Counter(
            axis_name(item[0]) if isinstance(item, list | tuple) else self.axis
            for item in self.history.get("slices", [])
        )
        if not counts:
            return (self.axis,)
        return tuple(
            sorted(counts, key=lambda a: (-counts[a], a != self.axis, "zyx".index(a)))
        )

    def check_classes(
        self, classes: ClassTable, source: str = "the checkpoint"
    ) -> None:
        """:class:`XrmError` unless ``classes`` match this checkpoint's table."""
        if self.classes is not None and not self.classes.matches(classes):
            raise XrmError(
                f"The classes {list(classes.names)} do not match those of {source} "
                f"{list(self.classes.names)}."
            )


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape a model's behaviour."""
    out = {"python": platform.python_version()}
    for name in ("napari-xrm-al", "torch", "monai", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "unknown"
    return out


def make_provenance(
    data, path: str | os.PathLike[str] | None = None, **extra: Any
) -> dict:
    """Provenance of a model made from volume ``data`` (read from ``path``)."""
    from napari_xrm_al.io.array_reads import volume_fingerprint

    return {
        "image_path": str(Path(path).resolve()) if path is not None else None,
        "image_shape": [int(s) for s in data.shape],
        "image_dtype": str(np.dtype(data.dtype)),
        "image_fingerprint": volume_fingerprint(data),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "versions": package_versions(),
        **extra,
    }


def _plain(value: Any) -> Any:
    """JSON-like copy (dict/list/str/int/float/bool/None) safe for ``weights_only``."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def save_checkpoint(path: str | os.PathLike[str], ckpt: Checkpoint) -> Path:
    """Write ``ckpt`` to ``path`` atomically; returns the path."""
    path = Path(path)
    if not path.parent.exists():
        raise InputError(path.parent, "does not exist (cannot write the checkpoint)")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": ckpt.kind,
        "model_config": ckpt.model_config.to_dict(),
        "state_dict": {
            k: v.detach().cpu().contiguous() for k, v in ckpt.state_dict.items()
        },
        "normalisation": ckpt.normalisation.to_dict(),
        "axis": ckpt.axis,
        "classes": ckpt.classes.to_dict() if ckpt.classes is not None else None,
        "provenance": _plain(ckpt.provenance),
        "history": _plain(ckpt.history),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def checkpoint_bytes(state_dict: dict[str, torch.Tensor]) -> int:
    """About how many bytes a checkpoint of these weights takes on disk."""
    weights = sum(t.numel() * t.element_size() for t in state_dict.values())
    return weights + weights // 20 + 2**20  # pickle framing, history, provenance


def kept_model_folders() -> tuple[Path, ...]:
    """Where :func:`save_or_keep` keeps a model it could not write as asked."""
    return (Path(tempfile.gettempdir()) / "napari-xrm-al", Path.cwd())


def save_or_keep(path: str | os.PathLike[str], ckpt: Checkpoint) -> Path:
    """Save ``ckpt`` to ``path``; if that fails, keep it elsewhere and say where.

    A trained model is never thrown away because its folder is full, read-only
    or gone: it is written to the first of :func:`kept_model_folders` that
    takes it, and the error names both paths.

    Raises
    ------
    XrmError
        When ``path`` cannot be written.
    """
    path = Path(path)
    try:
        return save_checkpoint(path, ckpt)
    except (OSError, InputError) as exc:
        problem = os_problem(exc) if isinstance(exc, OSError) else str(exc)
    what = "pretrained encoder" if ckpt.kind == "encoder" else "trained model"
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    for folder in kept_model_folders():
        kept = folder / f"{path.stem}-kept-{stamp}{path.suffix or '.pt'}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            save_checkpoint(kept, ckpt)
        except (OSError, InputError):
            continue
        raise XrmError(
            f"The {what} could not be saved to {path} ({problem}); "
            f"it was kept at {kept} instead."
        )
    raise XrmError(
        f"The {what} could not be saved to {path} ({problem}), nor in "
        f"{' or '.join(str(f) for f in kept_model_folders())}: it is lost."
    )


def load_checkpoint(
    path: str | os.PathLike[str], kind: str | None = None
) -> Checkpoint:
    """Read a checkpoint; :class:`InputError` (one sentence) if it cannot be used.

    Parameters
    ----------
    kind
        Expected kind (``'encoder'`` or ``'segmenter'``), or None for either.
    """
    path = Path(path)
    check_input(path)
    if path.is_dir():
        raise InputError(path, "is a folder, not a checkpoint file")
    if path.stat().st_size == 0:
        raise InputError(path, "is empty (0 bytes)")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise InputError(
            path,
            "is not a readable napari-xrm-al checkpoint: it is corrupt or holds "
            "Python objects other than plain data, which are never loaded "
            "(loading them could run code)",
        ) from None
    except (
        RuntimeError,
        EOFError,
        ValueError,
        OSError,
        zipfile.BadZipFile,
        AttributeError,
        TypeError,
        KeyError,
    ):
        raise InputError(
            path, "is not a readable napari-xrm-al checkpoint (truncated or corrupt?)"
        ) from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise InputError(path, "is not a napari-xrm-al checkpoint")
    fmt = raw.get("format_version")
    if not isinstance(fmt, int) or fmt > FORMAT_VERSION:
        raise InputError(
            path,
            f"has checkpoint format version {fmt}, newer than this napari-xrm-al "
            f"understands ({FORMAT_VERSION}); please upgrade napari-xrm-al",
        )
    if kind is not None and raw.get("kind") != kind:
        made_by = {"encoder": "'pretrain'", "segmenter": "'train'"}
        raise InputError(
            path,
            f"is a checkpoint of kind {raw.get('kind')!r}, but kind {kind!r} "
            f"(made by {made_by.get(kind, kind)}) is needed here",
        )
    try:
        classes = raw.get("classes")
        return Checkpoint(
            kind=raw["kind"],
            model_config=ModelConfig.from_dict(raw["model_config"]),
            state_dict=dict(raw["state_dict"]),
            normalisation=Normalisation.from_dict(raw["normalisation"]),
            axis=raw["axis"],
            classes=ClassTable.from_dict(classes) if classes is not None else None,
            provenance=raw.get("provenance") or {},
            history=raw.get("history") or {},
        )
    except (KeyError, TypeError) as exc:
        raise InputError(path, f"is a damaged checkpoint ({exc!r} missing)") from None
    except XrmError as exc:
        raise InputError(path, f"is a damaged checkpoint ({exc})") from None

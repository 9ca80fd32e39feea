"""Where a streamed prediction goes: class map, uncertainty and probability volumes.

Each output is either a path (opened here, written slab by slab into a hidden
sibling and renamed into place only when the whole prediction succeeded) or an
array-like the caller owns (a numpy array or an open writer, filled in place).

The class map is a mask (:class:`~napari_xrm_al.io.masks.MaskWriter`:
annotation ids ``1..C``, class table in its metadata). Uncertainty and
probabilities are zarr v3 arrays of ``uint8`` scaled to ``0..255``
(value / 255): uncertainty is the pixel entropy divided by ``ln C`` (0 = sure,
1 = uniform); probabilities have a leading class axis ``(C, z, y, x)``. A
float array given for the probabilities is filled with the exact float values
(fusing the predictions of several axes).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr
from zarr.codecs import BloscCodec

from napari_xrm_al.classes import ClassTable
from napari_xrm_al.core.inference.summaries import PixelStats
from napari_xrm_al.errors import InputError, mib
from napari_xrm_al.io.atomic import AtomicTarget
from napari_xrm_al.io.mask_formats import ATTRS_KEY, mask_format_for
from napari_xrm_al.io.masks import DEFAULT_CHUNKS, MaskWriter, label_dtype
from napari_xrm_al.io.output_paths import check_writable

#: Stored value = round(value * SCALE) for uncertainty and probabilities.
SCALE = 255


def check_out_path(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` if a result can be written there; :class:`InputError` otherwise."""
    path = check_writable(path, what)
    if path.is_dir() and not (path / "zarr.json").is_file():
        raise InputError(
            path,
            f"is a folder that is not a zarr store; not replacing it with the {what}",
        )
    return path


def _check_zarr_name(path: Path, what: str) -> None:
    if not path.name.lower().endswith(".zarr"):
        raise InputError(path, f"must end in '.zarr' (the {what} is a zarr array)")


class ScaledVolumeWriter:
    """A ``uint8`` zarr array (value × 255) written in slabs, renamed into place on commit."""

    def __init__(
        self, path: Path, shape: Sequence[int], chunks: Sequence[int], attrs: dict
    ) -> None:
        self._target = AtomicTarget(path, is_dir=True)
        self.path = self._target.final
        axes = ("c", "z", "y", "x")[-len(shape) :]
        self._array = zarr.create_array(
            self._target.tmp,
            shape=tuple(shape),
            chunks=tuple(min(c, s) for c, s in zip(chunks, shape, strict=True)),
            dtype=np.uint8,
            compressors=BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle"),
            fill_value=0,
            dimension_names=axes,
            attributes={ATTRS_KEY: {**attrs, "scale": 1 / SCALE, "axes": list(axes)}},
        )

    @property
    def array(self) -> zarr.Array:
        """The zarr array being written (in the hidden temporary store)."""
        return self._array

    def __setitem__(self, key: Any, value: np.ndarray) -> None:
        self._array[key] = value

    def commit(self) -> Path:
        return self._target.commit()

    def abort(self) -> None:
        self._target.abort()


def _to_uint8(values: torch.Tensor) -> np.ndarray:
    return (values * SCALE).round_().clamp_(0, SCALE).to(torch.uint8).cpu().numpy()


class PredictionOutputs:
    """The outputs of one prediction run (any of them may be absent).

    Parameters
    ----------
    labels, uncertainty, probabilities
        Paths or array-likes (see the module docstring); None to skip.
    shape
        ``(z, y, x)`` of the volume.
    axis
        Array axis (0, 1, 2) slices are taken along.
    classes
        The model's class table.
    voxel_size, provenance
        Metadata for outputs opened from paths.
    max_memory
        A TIFF class map whose pages (written whole) exceed it is refused.
    """

    def __init__(
        self,
        labels: Any,
        uncertainty: Any,
        probabilities: Any,
        *,
        shape: tuple[int, int, int],
        axis: int,
        classes: ClassTable,
        voxel_size: tuple[float, ...] | None = None,
        provenance: dict | None = None,
        max_memory: int | None = None,
    ) -> None:
        self.axis = axis
        self.n_classes = len(classes)
        self.dtype = label_dtype(classes)
        self._owned: list[Any] = []
        self._buf: dict[str, np.ndarray | None] = {}
        self.paths: dict[str, Path] = {}
        # Chunks whole along the other axes and 16 slices deep along the slice
        # axis, so slabs (a multiple of 16 slices) fill whole chunks.
        chunks = [256, 256, 256]
        chunks[axis] = DEFAULT_CHUNKS[0]
        paths = {
            k: check_out_path(v, k)
            for k, v in (
                ("labels", labels),
                ("uncertainty", uncertainty),
                ("probabilities", probabilities),
            )
            if isinstance(v, str | os.PathLike)
        }
        for key in ("uncertainty", "probabilities"):
            if key in paths:
                _check_zarr_name(paths[key], key)
        meta = {"classes": classes.to_dict()["classes"], "provenance": provenance or {}}
        if "labels" in paths:
            fmt = mask_format_for(paths["labels"])
            page = shape[1] * shape[2] * self.dtype.itemsize
            if fmt == "tiff" and max_memory is not None and page > max_memory:
                raise InputError(
                    paths["labels"],
                    f"cannot be written: its {shape[1]} × {shape[2]} TIFF pages "
                    f"({mib(page)} each) are written whole and exceed the memory "
                    f"limit of {mib(max_memory)}; write .zarr or .ome.zarr instead",
                )
        try:
            if "labels" in paths:
                labels = self._own(
                    "labels",
                    MaskWriter(
                        paths["labels"],
                        shape,
                        classes,
                        dtype=self.dtype,
                        chunks=None if fmt == "tiff" else tuple(chunks),
                        voxel_size=voxel_size,
                        name="prediction",
                        provenance=provenance,
                    ),
                )
            if "uncertainty" in paths:
                uncertainty = self._own(
                    "uncertainty",
                    ScaledVolumeWriter(
                        paths["uncertainty"],
                        shape,
                        chunks,
                        {
                            "kind": "uncertainty",
                            "quantity": "pixel entropy / ln(number of classes)",
                            "voxel_size": voxel_size,
                            **meta,
                        },
                    ),
                )
            if "probabilities" in paths:
                probabilities = self._own(
                    "probabilities",
                    ScaledVolumeWriter(
                        paths["probabilities"],
                        (self.n_classes, *shape),
                        (1, *chunks),
                        {"kind": "probabilities", "voxel_size": voxel_size, **meta},
                    ),
                )
        except BaseException:
            self.abort()
            raise
        self.labels, self.uncertainty, self.probabilities = (
            labels,
            uncertainty,
            probabilities,
        )
        self._check_shapes(shape)

    @property
    def _prob_dtype(self) -> np.dtype:
        """float32 into a float array given by the caller (exact), else uint8."""
        kind = np.dtype(getattr(self.probabilities, "dtype", np.uint8)).kind
        return np.dtype(np.float32 if kind == "f" else np.uint8)

    def _own(self, kind: str, writer: Any) -> Any:
        self._owned.append(writer)
        self.paths[kind] = writer.path
        return writer

    def _check_shapes(self, shape: tuple[int, int, int]) -> None:
        for dest, want in (
            (self.labels, shape),
            (self.uncertainty, shape),
            (self.probabilities, (self.n_classes, *shape)),
        ):
            got = getattr(dest, "shape", want) if dest is not None else want
            if tuple(got) != tuple(want):
                self.abort()
                raise InputError(
                    "(output array)", f"has shape {tuple(got)}, expected {want}"
                )

    def arrays(self) -> dict[str, zarr.Array]:
        """The zarr arrays of the outputs opened here, by kind, for writers elsewhere.

        Other processes (e.g. dask workers) may fill them, each its own chunks,
        before :meth:`commit` on this object moves them into place.
        """
        return {kind: w.array for kind, w in zip(self.paths, self._owned, strict=True)}

    # -- writing -----------------------------------------------------------
    def start(self, n: int, slice_shape: tuple[int, int]) -> None:
        """Allocate buffers for a slab of ``n`` slices."""
        h, w = slice_shape
        self._buf = {
            "labels": np.empty((n, h, w), self.dtype)
            if self.labels is not None
            else None,
            "uncertainty": np.empty((n, h, w), np.uint8)
            if self.uncertainty is not None
            else None,
            "probabilities": np.empty((n, self.n_classes, h, w), self._prob_dtype)
            if self.probabilities is not None
            else None,
        }

    def _converted(
        self, stats: PixelStats, wanted: dict[str, Any]
    ) -> dict[str, np.ndarray]:
        """The stored form of a batch's outputs, for the kinds in ``wanted``."""
        out: dict[str, np.ndarray] = {}
        if wanted.get("labels") is not None:
            out["labels"] = stats.label.cpu().numpy().astype(self.dtype) + 1
        if wanted.get("uncertainty") is not None:
            out["uncertainty"] = _to_uint8(stats.entropy / np.log(self.n_classes))
        if wanted.get("probabilities") is not None:
            out["probabilities"] = (
                _to_uint8(stats.probs)
                if self._prob_dtype == np.uint8
                else stats.probs.float().cpu().numpy()
            )
        return out

    def _dests(self) -> dict[str, Any]:
        return {
            "labels": self.labels,
            "uncertainty": self.uncertainty,
            "probabilities": self.probabilities,
        }

    def fill(self, offset: int, stats: PixelStats) -> None:
        """Put a batch's outputs at ``offset`` in the slab."""
        part = slice(offset, offset + len(stats.label))
        for kind, values in self._converted(stats, self._buf).items():
            self._buf[kind][part] = values  # type: ignore[index]

    def write_region(
        self, index: int, region: tuple[slice, slice], stats: PixelStats
    ) -> None:
        """Write one slice's outputs over ``region`` (rows, cols) of slice ``index``
        straight to the outputs (tiled prediction; ``stats`` of one slice)."""
        key = list(region)
        key.insert(self.axis, slice(index, index + 1))
        for kind, values in self._converted(stats, self._dests()).items():
            lead = kind == "probabilities"  # class axis first on disk
            self._dests()[kind][(slice(None), *key) if lead else tuple(key)] = (
                np.expand_dims(values[0], self.axis + lead)
            )

    def flush(self, slices: np.ndarray) -> None:
        """Write the slab, whose slices are ``slices`` (ascending), to the outputs."""
        runs = np.split(
            np.arange(len(slices)), np.flatnonzero(np.diff(slices) != 1) + 1
        )
        dests = self._dests()
        for kind, buf in self._buf.items():
            if buf is None:
                continue
            lead = buf.ndim == 4  # probabilities: class axis first on disk
            for run in runs:
                key = [slice(None)] * 3
                key[self.axis] = slice(int(slices[run[0]]), int(slices[run[-1]]) + 1)
                dests[kind][(slice(None), *key) if lead else tuple(key)] = np.moveaxis(
                    buf[run], 0, self.axis + lead
                )
        self._buf = {}

    def commit(self) -> None:
        """Move every output opened here to its final name."""
        for writer in self._owned:
            writer.commit()
        self._owned = []

    def abort(self) -> None:
        """Discard every output opened here; final names are left as they were."""
        for writer in self._owned:
            writer.abort()
        self._owned = []

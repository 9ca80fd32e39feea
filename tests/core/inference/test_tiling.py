"""Bounded memory on any slice size: tiled prediction equals untiled prediction,
only tiles are read from a lazy volume, and what cannot fit is refused up front
with the figures."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import zarr

from napari_xrm_al.classes import ClassTable
from napari_xrm_al.core.events import run_to_end
from napari_xrm_al.core.inference.embedding import embed_slices
from napari_xrm_al.core.inference.predict import PredictConfig, memory_plan
from napari_xrm_al.core.inference.tiling import footprint, pixel_bytes
from napari_xrm_al.core.training.trainset import load_labelled
from napari_xrm_al.errors import XrmError


def tile_budget(segmenter, data, side: int) -> int:
    """A memory limit whose tiles read boxes of about ``side`` pixels."""
    fp = footprint(segmenter.model_config)
    n_classes = len(segmenter.classes)
    per_pixel = pixel_bytes(fp, segmenter.context, data.dtype, n_classes)
    return int(per_pixel * (side + 2 * fp.margin) ** 2)


@pytest.fixture
def dropout_segmenter(untrained_segmenter, tiny_model_config):
    return untrained_segmenter(tiny_model_config, dropout=0.5)


@pytest.mark.parametrize(
    ("axis", "shape"), [("z", (10, 200, 180)), ("y", (200, 10, 180))]
)
def test_tiled_prediction_equals_untiled(
    dropout_segmenter, smooth_volume, bounded_reads, axis, shape
):
    segmenter = dropout_segmenter
    volume = smooth_volume(shape)
    config = PredictConfig(
        axis=axis,
        batch_size=1,  # MC-dropout masks are drawn per batch
        mc_samples=2,
        precision="float32",
    )
    n = len(segmenter.classes)
    outs = [
        {
            "out": np.zeros(volume.shape, np.uint8),
            "probabilities_out": np.zeros((n, *volume.shape), np.uint8),
            "uncertainty_out": np.zeros(volume.shape, np.uint8),
        }
        for _ in range(2)
    ]
    whole = run_to_end(
        segmenter.predict_volume(volume, config, indices=[0, 9], **outs[0])
    )
    budget = tile_budget(segmenter, volume, 64)
    margin = footprint(segmenter.model_config).margin
    lazy = bounded_reads(volume, limit=3 * (64 + 2 * margin) ** 2)
    _, _, tiles = memory_plan(segmenter, lazy, "zyx".index(axis), 1, budget)
    assert tiles is not None and len(tiles) == 4 * 3
    tiled = run_to_end(
        segmenter.predict_volume(
            lazy, replace(config, max_memory=budget), indices=[0, 9], **outs[1]
        )
    )
    assert np.array_equal(outs[0]["out"], outs[1]["out"])
    assert np.moveaxis(outs[0]["out"], "zyx".index(axis), 0)[[0, 9]].min() >= 1
    for key in ("probabilities_out", "uncertainty_out"):
        diff = np.abs(outs[0][key].astype(int) - outs[1][key].astype(int))
        assert diff.max() <= 1  # uint8 rounding of float-equal values
    for field in (
        "mean_entropy",
        "mean_margin",
        "class_fraction",
        "entropy_by_class",
        "bald",
        "embedding",
    ):
        np.testing.assert_allclose(
            getattr(tiled.summary, field),
            getattr(whole.summary, field),
            rtol=1e-4,
            atol=1e-6,
            err_msg=field,
        )
    np.testing.assert_allclose(tiled.class_fraction, whole.class_fraction)


def test_huge_sparse_slices_are_refused_with_the_figures_before_any_read(
    tmp_path, untrained_segmenter, tiny_model_config, sparse_zarr, bounded_reads
):
    segmenter = untrained_segmenter(tiny_model_config)
    data = bounded_reads(sparse_zarr(tmp_path / "big.zarr", (2, 20000, 20000)), 0)
    with pytest.raises(XrmError, match=r"20000 × 20000 slice needs about .* GiB"):
        run_to_end(segmenter.predict_volume(data, PredictConfig(max_memory=2**20)))
    assert data.reads == 0


def test_huge_sparse_slices_are_predicted_tile_by_tile(
    tmp_path, untrained_segmenter, tiny_model_config, sparse_zarr, bounded_reads
):
    """A 2 × 20000 × 20000 zarr with one labelled corner: its slices would need
    ~60 GiB each; tiles of an 8 MiB limit read at most their box (no read of a
    whole slice) and write the class map chunk by chunk."""
    segmenter = untrained_segmenter(tiny_model_config)
    budget = 8 * 2**20
    data = sparse_zarr(tmp_path / "big.zarr", (2, 20000, 20000))
    _, _, tiles = memory_plan(segmenter, data, 0, 1, budget)
    lazy = bounded_reads(data, limit=3 * tiles.read_side**2)
    out = zarr.create_array(
        tmp_path / "out.zarr",
        shape=data.shape,
        chunks=(1, 1024, 1024),
        dtype=np.uint8,
        fill_value=0,
    )
    gen = segmenter.predict_volume(
        lazy, PredictConfig(max_memory=budget), out=out, indices=[1]
    )
    for _ in range(3):  # the first tiles; the whole volume would take minutes
        next(gen)
    gen.close()
    assert 0 < lazy.largest <= 3 * tiles.read_side**2
    assert out[1, :16, :16].min() >= 1  # the first tile was written


def test_untileable_network_is_refused(untrained_segmenter, tiny_model_config):
    segmenter = untrained_segmenter(tiny_model_config, norm="instance")
    volume = np.zeros((2, 400, 400), np.float32)
    with pytest.raises(XrmError, match="cannot be split into tiles"):
        run_to_end(segmenter.predict_volume(volume, PredictConfig(max_memory=2**20)))


def test_embedding_huge_slices_is_refused_before_reading(
    tmp_path, untrained_segmenter, tiny_model_config, sparse_zarr, bounded_reads
):
    ckpt = untrained_segmenter(tiny_model_config).checkpoint
    data = bounded_reads(sparse_zarr(tmp_path / "big.zarr", (2, 20000, 20000)), 0)
    with pytest.raises(XrmError, match=r"needs about .* GiB to embed"):
        run_to_end(embed_slices(ckpt, data, max_memory=2**28))


def test_training_on_huge_slices_is_refused_before_reading(
    tmp_path, sparse_zarr, bounded_reads
):
    shape = (2, 20000, 20000)
    image = bounded_reads(sparse_zarr(tmp_path / "im.zarr", shape), 0)
    labels = bounded_reads(sparse_zarr(tmp_path / "lab.zarr", shape, np.uint8), 0)
    with pytest.raises(XrmError, match=r"1 labelled 20000 × 20000 slices .* GiB"):
        load_labelled(image, labels, [1], ClassTable.hbm(), max_memory=2**30)
    assert image.reads == labels.reads == 0


def test_all_nan_volume_is_refused(untrained_segmenter, tiny_model_config):
    segmenter = untrained_segmenter(tiny_model_config)
    volume = np.full((3, 32, 32), np.nan, np.float32)
    volume[1, 3, 3] = np.inf
    with pytest.raises(XrmError, match="no finite values"):
        run_to_end(segmenter.predict_volume(volume, out=np.zeros(volume.shape)))


def test_measuring_a_footprint_imports_nothing_more():
    """The probe runs with forward hooks: the first operation under a Python
    dispatch mode would import some 800 modules (sympy, torch.fx): 70 MB more
    resident memory for every prediction."""
    code = (
        "import sys\n"
        "from napari_xrm_al.core.model.network import ModelConfig\n"
        "from napari_xrm_al.core.inference.tiling import footprint\n"
        "before = set(sys.modules)\n"
        "footprint(ModelConfig(n_classes=4, features=(4, 8)))\n"
        "print(sorted(set(sys.modules) - before))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout[:500]

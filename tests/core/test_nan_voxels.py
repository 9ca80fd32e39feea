"""NaN and infinite voxels (float scans with dead pixels or masked regions): a
defined value everywhere, finite losses, a class for every voxel, no crash."""

from __future__ import annotations

import numpy as np
import pytest

from napari_xrm_al.classes import ClassTable
from napari_xrm_al.core.events import run_to_end
from napari_xrm_al.core.inference.segmenter import Segmenter
from napari_xrm_al.core.metrology.bumps import measure_bumps
from napari_xrm_al.core.model.normalization import fit_normalisation
from napari_xrm_al.core.training.pretrain import pretrain
from napari_xrm_al.core.training.step_loop import RunOptions
from napari_xrm_al.core.training.train import train
from napari_xrm_al.errors import XrmError


@pytest.fixture(scope="module")
def holes(request):
    """``sample0`` as float32 with NaN, +Inf and -Inf voxels and one all-NaN slice."""
    sample = request.getfixturevalue("sample0")
    image = sample.image.astype(np.float32)
    rng = np.random.default_rng(0)
    flat = image.reshape(-1)
    picks = rng.choice(flat.size, size=flat.size // 50, replace=False)
    flat[picks[0::3]] = np.nan
    flat[picks[1::3]] = np.inf
    flat[picks[2::3]] = -np.inf
    image[5] = np.nan
    return image, sample.labels


def test_normalisation_ignores_them_and_maps_them_to_a_defined_value(holes) -> None:
    image, _ = holes
    norm = fit_normalisation(image)
    assert np.isfinite([norm.low, norm.high]).all() and norm.high > norm.low
    out = norm.apply(image[4:7])
    assert np.isfinite(out).all()
    assert (out[1] == 0).all()  # the all-NaN slice is one defined value
    with pytest.raises(XrmError, match="no finite values"):
        fit_normalisation(np.full((2, 4, 4), np.nan, np.float32))


def test_pretrain_train_and_predict_stay_finite(
    holes, annotate, tiny_pretrain_config, tiny_train_config
) -> None:
    image, labels = holes
    encoder = run_to_end(pretrain(image, config=tiny_pretrain_config))
    assert np.isfinite(encoder.history["loss"]).all()

    slices = [5, 12, 20]  # 5 is all NaN
    ckpt = run_to_end(
        train(
            image,
            annotate(labels, slices),
            slices,
            ClassTable.hbm(),
            init=encoder,
            config=tiny_train_config,
            run=RunOptions(normalisation=encoder.normalisation),
        )
    )
    assert np.isfinite(ckpt.history["loss"]).all()
    assert all(np.isfinite(v).all() for v in ckpt.state_dict.values())

    segmenter = Segmenter.build(ckpt, "cpu")
    predicted = np.zeros(image.shape, np.uint8)
    result = run_to_end(segmenter.predict_volume(image, out=predicted))
    assert predicted.shape == image.shape
    assert predicted.min() >= 1 and predicted.max() <= 4  # every voxel has a class
    assert np.isfinite(result.class_fraction).all()
    assert np.isfinite(result.summary.mean_entropy).all()

    bumps = measure_bumps(predicted, solder_id=3, void_id=4, voxel_size=(1, 1, 1))
    assert all(np.isfinite(b.void_ratio) for b in bumps)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_metrology_refuses_a_non_finite_voxel_size(bad) -> None:
    mask = np.ones((4, 8, 8), np.uint8)
    with pytest.raises(XrmError, match="three positive numbers"):
        measure_bumps(mask, solder_id=3, void_id=4, voxel_size=(1.0, bad, 1.0))

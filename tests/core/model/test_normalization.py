from __future__ import annotations

import numpy as np
import pytest

from napari_xrm_al.core.model.normalization import (
    CLIP,
    SCAN_TOLERANCE,
    Normalisation,
    fit_normalisation,
    normalisation_for_scan,
)
from napari_xrm_al.errors import XrmError


class CountingVolume:
    """Array-like that counts the voxels read through it."""

    def __init__(self, data: np.ndarray) -> None:
        self._data = data
        self.shape = data.shape
        self.dtype = data.dtype
        self.ndim = data.ndim
        self.read = 0

    def __getitem__(self, key):
        out = np.asarray(self._data[key])
        self.read += out.size
        return out


def test_fit_matches_whole_volume_percentiles():
    rng = np.random.default_rng(1)
    vol = rng.gamma(2.0, 1000.0, size=(40, 64, 64)).astype(np.uint16)
    norm = fit_normalisation(vol)
    lo, hi = np.percentile(vol, (0.5, 99.5))
    assert norm.low == pytest.approx(lo, rel=0.1, abs=5)
    assert norm.high == pytest.approx(hi, rel=0.1)


def test_fit_reads_only_a_subsample():
    vol = CountingVolume(np.random.default_rng(0).normal(size=(200, 64, 64)))
    fit_normalisation(vol, max_voxels=5_000)
    assert 0 < vol.read < vol._data.size // 4


def test_apply_maps_percentiles_to_unit_range_and_cleans():
    norm = Normalisation(100.0, 300.0)
    x = np.array([100, 200, 300, np.nan, np.inf, -np.inf, 1e9, -1e9])
    out = norm.apply(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[:3], [0.0, 0.5, 1.0])
    assert out[3] == out[4] == out[5] == 0.0
    assert (out[6], out[7]) == (CLIP[1], CLIP[0])


def test_constant_volume_gives_a_usable_normalisation():
    norm = fit_normalisation(np.full((4, 8, 8), 7, np.uint8))
    assert norm.high > norm.low
    assert np.isfinite(norm.apply(np.full(3, 7))).all()


def test_round_trip_and_validation():
    norm = Normalisation(-2.5, 10.0, (1.0, 99.0))
    assert Normalisation.from_dict(norm.to_dict()) == norm
    with pytest.raises(XrmError, match="high > low"):
        Normalisation(3.0, 3.0)
    with pytest.raises(XrmError, match="Malformed"):
        Normalisation.from_dict({"low": 1})
    with pytest.raises(XrmError, match="3D"):
        fit_normalisation(np.zeros((4, 4)))


def test_a_scan_with_other_grey_levels_is_normalised_by_its_own():
    rng = np.random.default_rng(3)
    scan = rng.gamma(2.0, 1000.0, size=(30, 48, 48)).astype(np.float32)
    model = fit_normalisation(scan, seed=5)  # as training fitted it
    # The training scan itself (another subsample): the model's numbers.
    assert normalisation_for_scan(model, scan) == (model, False)
    # 0.4 times the gain plus an offset: the scan's own, mapping it as the model
    # maps the training scan.
    other = 0.4 * scan + 300.0
    own, used = normalisation_for_scan(model, other)
    assert used and own.percentiles == model.percentiles
    np.testing.assert_allclose(own.apply(other), model.apply(scan), atol=0.02)
    assert np.abs(model.apply(other) - model.apply(scan)).mean() > 0.05
    # Forced either way.
    assert normalisation_for_scan(model, other, "model") == (model, False)
    assert normalisation_for_scan(model, scan, "scan")[1]
    with pytest.raises(XrmError, match="intensity normalisation 'gain'.*auto"):
        normalisation_for_scan(model, scan, "gain")


def test_auto_keeps_the_model_within_the_tolerance():
    scan = np.random.default_rng(4).normal(1000.0, 100.0, (20, 32, 32))
    model = fit_normalisation(scan)
    span = model.high - model.low
    slightly = scan + 0.8 * SCAN_TOLERANCE * span
    assert normalisation_for_scan(model, slightly) == (model, False)
    beyond = scan + 1.2 * SCAN_TOLERANCE * span
    assert normalisation_for_scan(model, beyond)[1]

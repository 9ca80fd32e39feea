"""The synthetic HBM sample: classes, voids, seeds, thick dies, files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_xrm_al.classes import ClassTable
from napari_xrm_al.core.synthetic.geometry import COPPER as CU
from napari_xrm_al.core.synthetic.geometry import SOLDER as SOLDER_MATERIAL
from napari_xrm_al.core.synthetic.imaging import draw_imaging
from napari_xrm_al.core.synthetic.params import SampleParams
from napari_xrm_al.core.synthetic.sample import (
    class_fractions,
    make_hbm_sample,
    slice_fractions,
    thick_die_params,
    write_sample,
)
from napari_xrm_al.errors import InputError, XrmError

SMALL = (48, 96, 96)
BACKGROUND, COPPER, SOLDER, VOID = range(4)


@pytest.fixture(scope="module")
def default_samples():
    """The default volume for seeds 0 and 1 (about half a second each)."""
    return [make_hbm_sample(seed=seed) for seed in (0, 1)]


def z_runs(mask_per_slice: np.ndarray) -> int:
    """Number of contiguous runs of True along z."""
    padded = np.concatenate([[False], mask_per_slice, [False]])
    return int(np.count_nonzero(np.diff(padded.astype(np.int8)) == 1))


def test_same_seed_gives_the_same_volume():
    a = make_hbm_sample(seed=3, shape=SMALL)
    b = make_hbm_sample(SampleParams(seed=3, shape=SMALL))
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.labels, b.labels)


def test_seeds_differ_in_geometry_and_intensities(default_samples):
    a, b = default_samples
    assert not np.array_equal(a.labels, b.labels)
    assert class_fractions(a) != class_fractions(b)
    for cls in (COPPER, SOLDER):
        med_a = np.median(a.image[a.labels == cls])
        med_b = np.median(b.image[b.labels == cls])
        assert abs(med_a - med_b) > 0.02 * max(med_a, med_b)


def test_default_volume_has_every_class_with_rare_voids(default_samples):
    for sample in default_samples:
        assert sample.image.shape == sample.labels.shape == SampleParams().shape
        assert sample.image.dtype == np.uint16 and sample.labels.dtype == np.uint8
        assert set(np.unique(sample.labels)) == {BACKGROUND, COPPER, SOLDER, VOID}
        assert sample.classes == ClassTable.hbm()
        fractions = class_fractions(sample)
        assert 0 < fractions["void"] < 0.01
        assert fractions["void"] < fractions["solder"] < fractions["copper"]
        assert sum(fractions.values()) == pytest.approx(1.0)


def test_voids_lie_inside_solder(default_samples):
    for sample in default_samples:
        labels = sample.labels
        voids = np.argwhere(labels == VOID)
        shape = np.array(labels.shape)
        interior = voids[np.all((voids > 0) & (voids < shape - 1), axis=1)]
        assert len(interior) == len(voids)  # voids keep off the border
        for axis in range(3):
            for step in (-1, 1):
                neighbours = interior.copy()
                neighbours[:, axis] += step
                values = labels[tuple(neighbours.T)]
                assert np.isin(values, (SOLDER, VOID)).all()


def test_image_intensities_separate_classes_but_overlap(default_samples):
    for sample in default_samples:
        values = [sample.image[sample.labels == c] for c in range(4)]
        medians = [np.median(v) for v in values]
        assert medians[BACKGROUND] < medians[COPPER] < medians[SOLDER]
        assert medians[VOID] < medians[SOLDER]
        # Blur, cupping and noise: no single threshold splits copper from solder.
        assert np.percentile(values[COPPER], 99) > np.percentile(values[SOLDER], 1)
        assert np.percentile(values[VOID], 99) > np.percentile(values[BACKGROUND], 50)


def test_solder_attenuates_more_than_copper_in_every_draw():
    # Drawn apart, copper's and solder's variations once let a scan's solder
    # sit at copper's grey value (ratio 1.01), unlike any Sn-Ag cap on Cu.
    params = SampleParams()
    ratios = []
    for seed in range(200):
        imaging = draw_imaging(params, (64, 64), np.random.default_rng(seed))
        ratios.append(imaging.attenuation[SOLDER_MATERIAL] / imaging.attenuation[CU])
    assert min(ratios) >= 1.12
    assert max(ratios) - min(ratios) > 0.15  # still varies from scan to scan


def test_thick_dies_leave_solder_in_few_slices(default_samples):
    for seed, default in enumerate(default_samples):
        thick = make_hbm_sample(thick_die_params(seed, shape=(128, 64, 64)))
        assert thick.params.die_thickness > default.params.die_thickness
        share = slice_fractions(thick)
        assert 0 < share["solder"] < 0.10
        assert share["void"] <= share["solder"]
        assert slice_fractions(default)["solder"] > share["solder"]


def test_layers_fill_the_height_unless_counted():
    auto = make_hbm_sample(seed=0, shape=(128, 64, 64))
    one = make_hbm_sample(seed=0, shape=(128, 64, 64), n_bump_layers=1)
    assert z_runs((auto.labels == SOLDER).any(axis=(1, 2))) == 2
    assert z_runs((one.labels == SOLDER).any(axis=(1, 2))) == 1


def test_void_probability_controls_voids():
    none = make_hbm_sample(seed=2, shape=SMALL, void_probability=0.0)
    every = make_hbm_sample(seed=2, shape=SMALL, void_probability=1.0)
    assert not (none.labels == VOID).any()
    assert (every.labels == VOID).any()


def test_voids_can_be_confined_to_one_bump_layer():
    def void_slices_per_layer(layers):
        sample = make_hbm_sample(
            seed=0, shape=(128, 64, 64), void_probability=1.0, void_layers=layers
        )
        solder = (sample.labels == SOLDER).any(axis=(1, 2))
        void = (sample.labels == VOID).any(axis=(1, 2))
        assert z_runs(solder) == 2
        middle = 64  # the two layers sit either side of the middle
        return int(void[:middle].sum()), int(void[middle:].sum())

    lower, upper = void_slices_per_layer(None)
    assert lower > 0 and upper > 0
    lower, upper = void_slices_per_layer((1,))
    assert lower == 0 and upper > 0
    assert void_slices_per_layer((0,))[1] == 0
    with pytest.raises(XrmError, match="beyond the 2 bump layers"):
        make_hbm_sample(seed=0, shape=(128, 64, 64), void_layers=(2,))


def test_params_round_trip_through_json():
    params = thick_die_params(5, shape=[32, 64, 64], void_probability=0.7)
    assert SampleParams(**json.loads(json.dumps(params.to_dict()))) == params
    params = SampleParams(void_layers=[1])
    assert params.void_layers == (1,)
    assert SampleParams(**json.loads(json.dumps(params.to_dict()))) == params


@pytest.mark.parametrize(
    "bad",
    [
        {"shape": (4, 64, 64)},
        {"shape": (64, 64)},
        {"void_probability": 1.5},
        {"die_thickness": 0},
        {"n_bump_layers": 0},
        {"void_layers": (-1,)},
        {"pitch_range": (40.0, 30.0)},
        {"noise": -0.1},
    ],
)
def test_bad_params_raise_one_clear_error(bad):
    with pytest.raises(XrmError):
        SampleParams(**bad)


def test_write_sample_round_trips_arrays_voxel_size_and_classes(tmp_path):
    sample = make_hbm_sample(seed=1, shape=(16, 40, 48), voxel_size_um=0.7)
    paths = write_sample(tmp_path / "out", sample)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "classes.json",
        "image.tif",
        "labels.tif",
    ]
    for key, expected in (("image", sample.image), ("labels", sample.labels)):
        with tifffile.TiffFile(paths[key]) as tif:
            assert np.array_equal(tif.asarray(), expected)
            assert tif.imagej_metadata["spacing"] == pytest.approx(0.7)
            assert tif.imagej_metadata["unit"] == "um"
            num, den = tif.pages[0].tags["XResolution"].value
            assert den / num == pytest.approx(0.7, rel=1e-4)
    info = json.loads(paths["classes"].read_text())
    assert ClassTable.from_dict(info) == sample.classes
    assert info["voxel_size_um"] == pytest.approx([0.7, 0.7, 0.7])
    assert SampleParams(**info["params"]) == sample.params


def test_write_sample_refuses_a_file_as_folder(tmp_path):
    target = tmp_path / "taken"
    target.write_text("")
    sample = make_hbm_sample(seed=0, shape=(8, 16, 16))
    with pytest.raises(InputError, match="taken"):
        write_sample(target, sample)

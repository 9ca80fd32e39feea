"""Void metrology on constructed masks whose answers are known by construction."""

from __future__ import annotations

import math

import dask.array as da
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage

from napari_xrm_al.core.events import run_to_end
from napari_xrm_al.core.metrology.bumps import (
    equivalent_diameter,
    iter_measure_bumps,
    measure_bumps,
    with_threshold,
)
from napari_xrm_al.core.synthetic.sample import make_hbm_sample
from napari_xrm_al.errors import XrmError

# Dense HBM ids: background, copper, solder, void.
BG, CU, SOLDER, VOID = 0, 1, 2, 3


def measure(mask, **kwargs):
    return measure_bumps(mask, solder_id=SOLDER, void_id=VOID, **kwargs)


def independent_count(mask, solder_id=SOLDER, void_id=VOID, connectivity=6):
    """(solder, void, n_voids) per bump in raster order, one bump at a time."""
    structure = ndimage.generate_binary_structure(3, 1 if connectivity == 6 else 3)
    bumps, n = ndimage.label((mask == solder_id) | (mask == void_id), structure)
    voids, _ = ndimage.label(mask == void_id, structure)
    out = []
    for i in range(1, n + 1):
        inside = bumps == i
        solder = int(np.count_nonzero(inside & (mask == solder_id)))
        void = int(np.count_nonzero(inside & (mask == void_id)))
        if solder:
            out.append((solder, void, len(np.unique(voids[inside & (voids > 0)]))))
    return out


def test_bump_without_voids():
    mask = np.zeros((10, 12, 14), np.uint8)
    mask[2:6, 3:7, 4:10] = SOLDER
    mask[6:8, 3:7, 4:10] = CU  # copper does not belong to the bump
    (bump,) = measure(mask)
    assert bump.id == 1
    assert (bump.z, bump.y, bump.x) == (3.5, 4.5, 6.5)
    assert bump.bbox == (2, 3, 4, 6, 7, 10)
    assert (bump.solder_voxels, bump.void_voxels, bump.n_voids) == (96, 0, 0)
    assert bump.void_ratio == 0.0
    assert bump.largest_void_diameter_vox == 0.0
    assert bump.passed and not bump.partial
    assert bump.largest_void_diameter_um is None and bump.solder_volume_um3 is None


def test_void_at_the_bump_edge_counts():
    mask = np.zeros((8, 8, 8), np.uint8)
    mask[1:7, 1:7, 1:7] = SOLDER
    mask[3:5, 3:5, 1:3] = VOID  # open to the background at x = 1
    (bump,) = measure(mask)
    assert (bump.solder_voxels, bump.void_voxels, bump.n_voids) == (208, 8, 1)
    assert bump.void_ratio == 8 / 216
    assert bump.bbox == (1, 1, 1, 7, 7, 7)
    assert bump.largest_void_diameter_vox == pytest.approx((6 * 8 / math.pi) ** (1 / 3))


def test_two_voids_in_one_bump_and_physical_units():
    mask = np.zeros((8, 10, 10), np.uint8)
    mask[1:7, 1:9, 1:9] = SOLDER
    mask[2:4, 2:4, 2:4] = VOID  # 8 voxels
    mask[3:6, 5:8, 5:8] = VOID  # 27 voxels
    (bump,) = measure(mask, voxel_size=(2.0, 0.5, 0.5), max_void_ratio=0.05)
    assert (bump.void_voxels, bump.n_voids) == (35, 2)
    assert bump.solder_voxels == 6 * 8 * 8 - 35
    assert bump.largest_void_diameter_vox == pytest.approx(equivalent_diameter(27))
    assert bump.largest_void_diameter_um == pytest.approx(equivalent_diameter(27 * 0.5))
    assert bump.solder_volume_um3 == pytest.approx(bump.solder_voxels * 0.5)
    assert bump.void_volume_um3 == pytest.approx(35 * 0.5)
    assert not bump.passed  # 35 / 384 > 0.05


def test_threshold_is_inclusive():
    mask = np.zeros((4, 6, 6), np.uint8)
    mask[1:3, 1:5, 1:5] = SOLDER
    mask[1:3, 1:3, 1:5] = VOID  # exactly half
    assert measure(mask, max_void_ratio=0.5)[0].passed
    strict = measure(mask, max_void_ratio=0.49)
    assert not strict[0].passed
    assert with_threshold(strict, 0.5) == measure(mask, max_void_ratio=0.5)


def test_touching_bumps_are_one_bump_diagonal_contact_depends_on_connectivity():
    mask = np.zeros((6, 6, 12), np.uint8)
    mask[1:5, 1:5, 1:5] = SOLDER
    mask[1:5, 1:5, 5:9] = SOLDER  # face contact: a solder bridge
    assert len(measure(mask)) == 1
    assert measure(mask)[0].solder_voxels == 128

    corner = np.zeros((6, 6, 6), np.uint8)
    corner[1:3, 1:3, 1:3] = SOLDER
    corner[3:5, 3:5, 3:5] = SOLDER  # touches the first at one corner only
    assert [b.solder_voxels for b in measure(corner)] == [8, 8]
    assert [b.solder_voxels for b in measure(corner, connectivity=26)] == [16]


def test_partial_bumps_at_every_border():
    mask = np.zeros((9, 9, 9), np.uint8)
    mask[4:6, 4:6, 4:6] = SOLDER  # inside
    mask[0:2, 0:2, 6:8] = SOLDER  # touches z = 0 and y = 0
    mask[7:9, 6:8, 0:2] = SOLDER  # touches z = 8 and x = 0
    mask[3:5, 7:9, 7:9] = SOLDER  # touches y = 8 and x = 8
    bumps = measure(mask)
    # ids follow raster order of each bump's first voxel
    assert [b.bbox[:3] for b in bumps] == [(0, 0, 6), (3, 7, 7), (4, 4, 4), (7, 6, 0)]
    assert [b.partial for b in bumps] == [True, True, False, True]


def test_empty_mask_and_void_without_solder():
    assert measure(np.zeros((4, 5, 6), np.uint8)) == []
    only_void = np.zeros((4, 5, 6), np.uint8)
    only_void[1:3, 1:3, 1:3] = VOID  # no solder: not a bump
    assert measure(only_void) == []


def test_min_voxels_drops_specks():
    mask = np.zeros((6, 6, 6), np.uint8)
    mask[1:4, 1:4, 1:4] = SOLDER
    mask[5, 5, 5] = SOLDER
    assert [b.solder_voxels for b in measure(mask)] == [27, 1]
    assert [b.solder_voxels for b in measure(mask, min_voxels=2)] == [27]


def test_sample_ground_truth_matches_an_independent_count():
    sample = make_hbm_sample(seed=0, shape=(64, 128, 128), void_probability=1.0)
    solder, void = sample.classes.index("solder"), sample.classes.index("void")
    bumps = measure_bumps(
        sample.labels,
        solder_id=solder,
        void_id=void,
        voxel_size=sample.voxel_size,
        slab=7,
    )
    expected = independent_count(sample.labels, solder, void)
    assert len(bumps) >= 4 and sum(b.n_voids for b in bumps) >= len(bumps)
    assert [(b.solder_voxels, b.void_voxels, b.n_voids) for b in bumps] == expected
    assert [b.void_ratio for b in bumps] == [v / (s + v) for s, v, _ in expected]
    structure = ndimage.generate_binary_structure(3, 1)
    fg = (sample.labels == solder) | (sample.labels == void)
    lab, n = ndimage.label(fg, structure)
    centres = ndimage.center_of_mass(fg, lab, range(1, n + 1))
    np.testing.assert_allclose([(b.z, b.y, b.x) for b in bumps], centres)


def hairpin():
    """Two arms joined only at the bottom, with a void running through slabs."""
    mask = np.zeros((12, 6, 10), np.uint8)
    mask[1:11, 1:5, 1:3] = SOLDER
    mask[1:11, 1:5, 6:8] = SOLDER
    mask[9:11, 1:5, 3:6] = SOLDER
    mask[2:10, 2:4, 6:8] = VOID
    mask[3:5, 2:3, 1:2] = VOID
    return mask


@pytest.mark.parametrize("slab", [1, 2, 3, 5])
@pytest.mark.parametrize("connectivity", [6, 26])
def test_slab_streaming_matches_in_memory(slab, connectivity):
    mask = hairpin()
    whole = measure(mask, slab=mask.shape[0], connectivity=connectivity)
    assert len(whole) == 1 and whole[0].n_voids == 2
    assert measure(mask, slab=slab, connectivity=connectivity) == whole


def test_lazy_arrays_are_read_slab_by_slab():
    mask = hairpin()
    lazy = da.from_array(mask, chunks=(2, 6, 10))
    assert measure(lazy, slab=2) == measure(mask)


@settings(max_examples=40, deadline=None)
@given(
    mask=arrays(
        np.uint8, st.tuples(*[st.integers(1, 7)] * 3), elements=st.integers(0, 3)
    ),
    slab=st.integers(1, 4),
    connectivity=st.sampled_from([6, 26]),
)
def test_random_masks_match_independent_count_at_any_slab(mask, slab, connectivity):
    got = measure(mask, slab=slab, connectivity=connectivity)
    assert got == measure(mask, connectivity=connectivity)
    expected = independent_count(mask, connectivity=connectivity)
    assert [(b.solder_voxels, b.void_voxels, b.n_voids) for b in got] == expected
    assert all(
        b.void_ratio == b.void_voxels / (b.solder_voxels + b.void_voxels) for b in got
    )


def test_progress_events_and_annotation_ids():
    mask = hairpin() + 1  # annotation ids: solder 3, void 4
    gen = iter_measure_bumps(mask, solder_id=3, void_id=4, slab=5)
    events = []
    bumps = run_to_end(gen, events.append)
    assert [(e.stage, e.step, e.total) for e in events] == [
        ("metrology", 5, 12),
        ("metrology", 10, 12),
        ("metrology", 12, 12),
    ]
    assert bumps == measure(hairpin())


@pytest.mark.parametrize(
    ("mask", "kwargs", "words"),
    [
        (np.zeros((4, 4), np.uint8), {}, "3D"),
        (np.zeros((2, 4, 4), np.float32), {}, "integers"),
        (np.zeros((2, 4, 4), np.uint8), {"void_id": SOLDER}, "different"),
        (np.zeros((2, 4, 4), np.uint8), {"max_void_ratio": 1.5}, "[0, 1]"),
        (np.zeros((2, 4, 4), np.uint8), {"voxel_size": (1, 0, 1)}, "positive"),
        (np.zeros((2, 4, 4), np.uint8), {"connectivity": 18}, "6 or 26"),
    ],
)
def test_bad_arguments_raise_at_call_time(mask, kwargs, words):
    args = {"solder_id": SOLDER, "void_id": VOID, **kwargs}
    with pytest.raises(XrmError, match=words.replace("[", r"\[").replace("]", r"\]")):
        iter_measure_bumps(mask, **args)

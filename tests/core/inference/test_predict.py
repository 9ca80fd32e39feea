"""Whole-volume prediction: streaming, outputs, summaries, MC dropout, cancel."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import zarr

from napari_xrm_al.classes import ClassTable
from napari_xrm_al.core.events import Progress, run_to_end
from napari_xrm_al.core.inference import slice_inference as inference
from napari_xrm_al.core.inference.predict import PredictConfig
from napari_xrm_al.core.inference.segmenter import Segmenter
from napari_xrm_al.core.inference.slab_prediction import slab_size
from napari_xrm_al.core.inference.slice_inference import SliceInference
from napari_xrm_al.core.inference.summaries import (
    SliceSummary,
    mutual_information,
    pixel_stats,
    summarise,
)
from napari_xrm_al.core.model.checkpoint import save_checkpoint
from napari_xrm_al.errors import XrmError
from napari_xrm_al.io.mask_reader import read_mask

SHAPE = (12, 40, 36)
#: The tests compare exact results: no bfloat16.
FLOAT32 = PredictConfig(precision="float32")


@pytest.fixture(scope="module")
def volume(smooth_volume):
    return smooth_volume(SHAPE)


def predict(segmenter, data, config=FLOAT32, **outputs):
    return run_to_end(segmenter.predict_volume(data, config, **outputs))


def float32(**settings) -> PredictConfig:
    return dataclasses.replace(FLOAT32, **settings)


class Recorder:
    """A lazy array that records every read."""

    def __init__(self, array):
        self.array, self.shape, self.dtype = array, array.shape, array.dtype
        self.chunks = getattr(array, "chunks", (1, *array.shape[1:]))
        self.ndim, self.reads = 3, []

    def __getitem__(self, key):
        self.reads.append(key)
        return self.array[key]


# -- summaries --------------------------------------------------------------
def test_summaries_of_hand_made_probabilities():
    # One slice of 4 pixels, 3 classes.
    p = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5], [0.0, 0.0, 1.0]])
    probs = torch.tensor(p.T.reshape(1, 3, 2, 2), dtype=torch.float32)
    out = summarise(pixel_stats(probs))
    h = np.array([0.0, math.log(2), -sum(v * math.log(v) for v in (0.2, 0.3, 0.5)), 0])
    np.testing.assert_allclose(out["mean_entropy"], [h.mean()], rtol=1e-6)
    np.testing.assert_allclose(out["mean_margin"], [(0 + 1 + 0.8 + 0) / 4], rtol=1e-6)
    # argmax: 0, 0 (tie -> first), 2, 2
    np.testing.assert_allclose(out["class_fraction"], [[0.5, 0.0, 0.5]])
    np.testing.assert_allclose(
        out["entropy_by_class"], [[h[1] / 4, 0.0, h[2] / 4]], rtol=1e-6
    )
    np.testing.assert_allclose(out["entropy_by_class"].sum(1), out["mean_entropy"])


def test_mutual_information_zero_when_samples_agree():
    rng = np.random.default_rng(0)
    p = torch.tensor(rng.dirichlet(np.ones(4), size=(2, 3, 3)), dtype=torch.float32)
    p = p.permute(0, 3, 1, 2)  # (B, C, H, W)
    assert torch.allclose(mutual_information(p[None]), torch.zeros(2, 3, 3))
    same = mutual_information(torch.stack([p, p, p]))
    assert torch.allclose(same, torch.zeros(2, 3, 3), atol=1e-6)
    flipped = torch.stack([p, p.flip(1)])  # samples that disagree
    assert (mutual_information(flipped) > 0).any()


def test_summary_save_load_concat(tmp_path):
    a = SliceSummary(
        np.arange(2), np.ones(2), np.ones(2), np.ones((2, 3)), np.ones((2, 3))
    )
    b = dataclasses.replace(a, index=np.arange(2, 4))
    joined = SliceSummary.concat([a, b])
    assert list(joined.index) == [0, 1, 2, 3] and joined.bald is None
    back = SliceSummary.load(joined.save(tmp_path / "s.npz"))
    assert np.array_equal(back.index, joined.index) and back.embedding is None


# -- prediction -------------------------------------------------------------
def test_checkpoint_round_trip_predicts_identically(tmp_path, segmenter, volume):
    first = predict(segmenter, volume, out=np.zeros(SHAPE, np.uint8))
    path = save_checkpoint(tmp_path / "m.pt", segmenter.checkpoint)
    loaded = Segmenter.from_checkpoint(path)
    labels = [np.zeros(SHAPE, np.uint8) for _ in range(2)]
    r1 = predict(segmenter, volume, out=labels[0])
    r2 = predict(loaded, volume, out=labels[1])
    assert np.array_equal(labels[0], labels[1])
    assert set(np.unique(labels[0])) - {1, 2, 3, 4} == set()
    for f in ("mean_entropy", "mean_margin", "class_fraction", "embedding"):
        assert np.array_equal(getattr(r1.summary, f), getattr(r2.summary, f))
    np.testing.assert_allclose(r1.class_fraction, first.class_fraction)


@pytest.mark.parametrize("axis", ["z", "y"])
def test_chunked_zarr_streams_and_equals_in_memory(tmp_path, segmenter, volume, axis):
    store = zarr.create_array(
        tmp_path / "v.zarr", shape=SHAPE, chunks=(4, 16, 16), dtype=np.float32
    )
    store[:] = volume
    lazy = Recorder(zarr.open_array(tmp_path / "v.zarr", mode="r"))
    config = float32(axis=axis, batch_size=2, max_memory=400_000)  # a few slices
    labels = [np.zeros(SHAPE, np.uint8) for _ in range(2)]
    mem = predict(segmenter, volume, config, out=labels[0])
    streamed = predict(segmenter, lazy, config, out=labels[1])
    assert np.array_equal(labels[0], labels[1]) and labels[0].min() >= 1
    for f in ("mean_entropy", "class_fraction", "entropy_by_class"):
        np.testing.assert_allclose(
            getattr(mem.summary, f), getattr(streamed.summary, f), rtol=1e-5
        )
    ax = "zyx".index(axis)
    extents = [k[ax].stop - k[ax].start for k in lazy.reads]
    assert len(lazy.reads) > 1
    assert max(extents) <= streamed.slab + 2 * segmenter.context
    assert max(extents) < SHAPE[ax]


def test_slab_size_follows_chunks_and_memory():
    store = zarr.create_array(
        {}, shape=(64, 512, 40), chunks=(16, 256, 40), dtype=np.uint16
    )
    per_slice = 10_000
    assert slab_size(store, 0, 4, per_slice, 2**30) == 32  # at least MIN_SLAB
    assert slab_size(store, 1, 4, per_slice, 2**30) == 256  # one chunk deep
    # 100 slices fit: the largest divisor of 256 that is a multiple of 4
    assert slab_size(store, 1, 4, per_slice, 100 * per_slice) == 64
    assert slab_size(store, 1, 4, per_slice, 1) == 4  # at least one batch


def test_subset_of_slices_matches_full_prediction(segmenter, volume):
    full = predict(segmenter, volume, float32(batch_size=1))
    part = predict(segmenter, volume, float32(batch_size=1), indices=[9, 2, 3, 2])
    assert list(part.summary.index) == [2, 3, 9]
    np.testing.assert_allclose(
        part.summary.mean_entropy, full.summary.mean_entropy[[2, 3, 9]], rtol=1e-5
    )
    probs = segmenter.predict_slices(volume, [9, 2], FLOAT32)
    assert probs.shape == (2, 4, *SHAPE[1:])
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    fractions = [(probs[i].argmax(0) == 0).mean() for i in range(2)]
    np.testing.assert_allclose(fractions, full.summary.class_fraction[[9, 2], 0])


def test_outputs_on_disk(tmp_path, segmenter, volume):
    events = []
    result = run_to_end(
        segmenter.predict_volume(
            volume,
            float32(axis="x"),
            out=tmp_path / "pred.ome.zarr",
            uncertainty_out=tmp_path / "u.zarr",
            probabilities_out=tmp_path / "p.zarr",
            voxel_size=(1.0, 0.5, 0.5),
        ),
        events.append,
    )
    assert all(isinstance(e, Progress) and e.stage == "predict" for e in events)
    assert events[-1].step == events[-1].total == SHAPE[2]
    mask = read_mask(tmp_path / "pred.ome.zarr")
    assert mask.classes.names == ClassTable.hbm().names
    probs = segmenter.predict_slices(volume, range(SHAPE[2]), float32(axis="x"))
    labels = np.moveaxis(probs.argmax(1) + 1, 0, 2)
    assert np.array_equal(np.asarray(mask.data), labels)
    p = zarr.open_array(tmp_path / "p.zarr", mode="r")
    assert p.shape == (4, *SHAPE) and p.dtype == np.uint8
    assert np.abs(np.asarray(p).sum(0).astype(int) - 255).max() <= 4
    u = zarr.open_array(tmp_path / "u.zarr", mode="r")
    entropy = -(probs * np.log(np.clip(probs, 1e-12, None))).sum(1) / np.log(4)
    expected = np.moveaxis(np.round(entropy * 255), 0, 2)
    assert np.abs(np.asarray(u).astype(int) - expected).max() <= 1
    assert u.attrs["napari_xrm_al"]["kind"] == "uncertainty"
    assert set(result.paths) == {"labels", "uncertainty", "probabilities"}


def test_cancel_and_errors_leave_nothing(tmp_path, segmenter, volume):
    out = tmp_path / "out"
    out.mkdir()
    gen = segmenter.predict_volume(
        volume,
        float32(batch_size=2),
        out=out / "p.zarr",
        uncertainty_out=out / "u.zarr",
    )
    next(gen)
    next(gen)
    gen.close()
    assert list(out.iterdir()) == []
    assert segmenter.net.training is False  # mode restored (it was eval)

    class Failing(Recorder):
        def __getitem__(self, key):
            if len(self.reads) == 1:
                raise OSError("disk gone")
            return super().__getitem__(key)

    with pytest.raises(OSError):
        predict(
            segmenter,
            Failing(volume),
            float32(batch_size=2, max_memory=400_000),
            out=out / "p.tif",
        )
    assert list(out.iterdir()) == []


def test_mc_dropout_bald(untrained_segmenter, tiny_model_config, volume):
    config = float32(mc_samples=4, seed=3)
    segmenter = untrained_segmenter(tiny_model_config, dropout=0.5)
    a = predict(segmenter, volume, config, indices=[0, 5]).summary
    b = predict(segmenter, volume, config, indices=[0, 5]).summary
    assert (a.bald > 0).all() and np.array_equal(a.bald, b.bald)
    assert predict(segmenter, volume, indices=[0]).summary.bald is None
    no_dropout = untrained_segmenter(tiny_model_config, dropout=0.0)
    np.testing.assert_allclose(
        predict(no_dropout, volume, config, indices=[0, 5]).summary.bald, 0, atol=1e-6
    )


def test_precision_auto_checks_agreement(segmenter, volume, monkeypatch):
    monkeypatch.setattr(inference, "bf16_supported", lambda device: True)
    monkeypatch.setattr(inference, "BF16_AGREEMENT", 1.01)  # unattainable
    assert predict(segmenter, volume, PredictConfig()).precision == "float32"
    monkeypatch.setattr(inference, "BF16_AGREEMENT", 0.0)
    engine = SliceInference(segmenter.net, segmenter.normalisation, precision="auto")
    with engine:
        engine.probabilities(engine.prepare(volume[None, :3]))
    assert engine.precision == "bfloat16" and 0 <= engine.agreement <= 1


def test_bad_inputs(segmenter, volume, tmp_path):
    bad = [
        ({"data": volume[0]}, "3D"),
        ({"indices": [12]}, "outside"),
        ({"out": tmp_path / "nowhere" / "p.zarr"}, "does not exist"),
        ({"uncertainty_out": tmp_path / "u.tif"}, ".zarr"),
        ({"out": np.zeros((2, 2, 2), np.uint8)}, "shape"),
    ]
    for change, words in bad:
        args = {"data": volume, **change}
        with pytest.raises(XrmError, match=words):
            predict(segmenter, args.pop("data"), **args)
    for samples in (0, 1.5):
        with pytest.raises(XrmError, match="MC-dropout samples"):
            PredictConfig(mc_samples=samples)
    assert list(tmp_path.iterdir()) == []


MEMORY_SCRIPT = textwrap.dedent(
    """
    import resource, sys, torch, zarr
    from napari_xrm_al.core.events import run_to_end
    from napari_xrm_al.core.inference.predict import PredictConfig
    from napari_xrm_al.core.inference.segmenter import Segmenter
    torch.set_num_threads(1)
    segmenter = Segmenter.from_checkpoint(sys.argv[1])
    config = PredictConfig(batch_size=2, max_memory=16 << 20, precision="float32",
                           summaries=False)
    def run(name):
        data = zarr.open_array(sys.argv[2] + "/" + name, mode="r")
        out = sys.argv[3] + "/" + name
        run_to_end(segmenter.predict_volume(data, config, out=out))
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kib * (1 if sys.platform == "darwin" else 1024)
    before = run("small.zarr")
    print(run("big.zarr") - before)
    """
)


def test_streaming_memory_stays_flat(tmp_path, untrained_segmenter, tiny_model_config):
    """Peak memory does not grow with the volume: a 32 MiB zarr volume predicted
    with a 16 MiB budget after a 4 MiB one raises the peak by far less than
    its size (whole-volume reading would add at least the volume)."""
    pytest.importorskip("resource")
    segmenter = untrained_segmenter(tiny_model_config, arch="unet", features=(4, 8))
    save_checkpoint(tmp_path / "m.pt", segmenter.checkpoint)
    rng = np.random.default_rng(0)
    depths = {"small.zarr": 16, "big.zarr": 128}
    for name, depth in depths.items():
        arr = zarr.create_array(
            tmp_path / name,
            shape=(depth, 256, 256),
            chunks=(8, 256, 256),
            dtype=np.float32,
            compressors=None,
        )
        for z0 in range(0, depth, 8):
            arr[z0 : z0 + 8] = rng.random((8, 256, 256), dtype=np.float32)
    (tmp_path / "out").mkdir()
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            MEMORY_SCRIPT,
            str(tmp_path / "m.pt"),
            str(tmp_path),
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    growth = int(done.stdout.strip().splitlines()[-1])
    big_bytes = depths["big.zarr"] * 256 * 256 * 4
    assert growth < big_bytes / 4, f"peak memory grew by {growth / 2**20:.1f} MiB"
    assert read_mask(tmp_path / "out" / "big.zarr").data.shape == (128, 256, 256)


@pytest.mark.parametrize(("threshold", "expected"), [(10**9, 1), (1, 12 // 4 + 1)])
def test_large_batches_return_memory_after_each_batch(
    segmenter, volume, monkeypatch, threshold, expected
):
    """Small batches trim the heap once per slab; large ones after every batch."""
    from napari_xrm_al.core.inference import slab_prediction

    calls = []
    monkeypatch.setattr(slab_prediction, "trim_heap", lambda: calls.append(1))
    monkeypatch.setattr(slab_prediction, "TRIM_EACH_BATCH_PIXELS", threshold)
    predict(segmenter, volume, float32(batch_size=4, summaries=False))
    assert len(calls) == expected  # one slab of 12 slices, 3 batches

"""Chunk-parallel prediction on a dask.distributed cluster of worker processes."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import torch
import zarr

from napari_xrm_al.cli import main
from napari_xrm_al.core.events import Progress, run_to_end
from napari_xrm_al.core.inference.distributed import predict_volume_dask
from napari_xrm_al.core.inference.predict import PredictConfig
from napari_xrm_al.core.inference.segmenter import Segmenter
from napari_xrm_al.core.model.checkpoint import save_checkpoint
from napari_xrm_al.core.model.network import ModelConfig
from napari_xrm_al.errors import XrmError
from napari_xrm_al.io.mask_reader import read_mask
from napari_xrm_al.io.volumes import open_volume

distributed = pytest.importorskip("distributed")

#: 40 slices: with 16 slices per task, two whole parts and a partial one.
SHAPE = (40, 32, 32)


@pytest.fixture(scope="module")
def files(tmp_path_factory, untrained_segmenter, smooth_volume):
    folder = tmp_path_factory.mktemp("dask")
    config = ModelConfig(n_classes=4, context=1, features=(4, 8))
    ckpt = untrained_segmenter(config).checkpoint
    volume = smooth_volume(SHAPE)
    image = zarr.create_array(
        folder / "scan.zarr", shape=SHAPE, chunks=(8, 16, 16), dtype=np.float32
    )
    image[:] = volume
    return {
        "model": save_checkpoint(folder / "model.pt", ckpt),
        "image": folder / "scan.zarr",
    }


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def outputs(folder):
    return {
        "out": folder / "labels.ome.zarr",
        "uncertainty_out": folder / "u.zarr",
        "probabilities_out": folder / "p.zarr",
    }


CONFIG = PredictConfig(batch_size=4, precision="float32")


def on_cluster(files, client, folder, slab):
    """The test scan predicted on ``client`` in parts of ``slab`` slices, every
    output written into ``folder``."""
    return predict_volume_dask(
        files["model"],
        files["image"],
        CONFIG,
        client=client,
        slab=slab,
        torch_threads=1,
        **outputs(folder),
    )


def test_cluster_output_identical_to_single_process(tmp_path, files, client):
    (tmp_path / "one").mkdir()
    (tmp_path / "many").mkdir()
    segmenter = Segmenter.from_checkpoint(files["model"])
    volume = open_volume(files["image"])
    torch.set_num_threads(1)
    single = run_to_end(
        segmenter.predict_volume(
            volume.data,
            CONFIG,
            voxel_size=volume.voxel_size,
            **outputs(tmp_path / "one"),
        )
    )
    events = []
    parallel = run_to_end(
        on_cluster(files, client, tmp_path / "many", slab=16), events.append
    )
    assert all(isinstance(e, Progress) for e in events)
    assert len(events) == 3 and events[-1].step == events[-1].total == SHAPE[0]
    a, b = (
        read_mask(tmp_path / "one/labels.ome.zarr"),
        read_mask(parallel.paths["labels"]),
    )
    assert np.asarray(a.data).dtype == np.asarray(b.data).dtype
    assert np.array_equal(np.asarray(a.data), np.asarray(b.data))
    assert len(np.unique(np.asarray(a.data))) > 1
    assert a.classes.to_dict() == b.classes.to_dict()
    for name in ("u.zarr", "p.zarr"):
        one = zarr.open_array(tmp_path / "one" / name, mode="r")
        many = zarr.open_array(tmp_path / "many" / name, mode="r")
        assert np.array_equal(one[...], many[...]) and one.attrs == many.attrs
    for field in ("index", "mean_entropy", "class_fraction", "embedding"):
        assert np.array_equal(
            getattr(single.summary, field), getattr(parallel.summary, field)
        )
    np.testing.assert_allclose(parallel.class_fraction, single.class_fraction)
    assert parallel.precision == "float32" and parallel.n_slices == SHAPE[0]


def test_cancelled_run_leaves_nothing(tmp_path, files, client):
    run = on_cluster(files, client, tmp_path, slab=8)
    first = next(run)
    assert first.step < SHAPE[0]
    run.close()
    assert list(tmp_path.iterdir()) == []
    # The cluster is still usable afterwards.
    result = run_to_end(
        predict_volume_dask(
            files["model"], files["image"], client=client, out=tmp_path / "l.zarr"
        )
    )
    assert [p.name for p in tmp_path.iterdir()] == ["l.zarr"]
    assert result.precision in ("float32", "bfloat16")


def test_worker_that_cannot_see_the_image_is_reported(tmp_path, files, client):
    image = tmp_path / "scan.zarr"
    image.symlink_to(files["image"])
    run = predict_volume_dask(
        files["model"],
        image,
        PredictConfig(batch_size=4),
        client=client,
        out=tmp_path / "l.zarr",
    )
    assert "precision" in next(run).message  # opened here; 'auto' asks a worker
    image.unlink()
    with pytest.raises(XrmError, match="same paths .* shared file system"):
        run_to_end(run)
    assert list(tmp_path.iterdir()) == []


def cli(files, out, *extra):
    args = ["predict", "--image", str(files["image"]), "--model", str(files["model"])]
    args += ["--out", str(out), "--batch-size", "4", "--threads", "1"]
    return main([*args, *extra])


def test_cli_dask_workers_and_scheduler(tmp_path, files, client, capsys):
    assert cli(files, tmp_path / "one.zarr") == 0
    assert cli(files, tmp_path / "local.zarr", "--dask-workers", "1") == 0
    address = client.scheduler.address
    assert cli(files, tmp_path / "remote.zarr", "--scheduler", address) == 0
    captured = capsys.readouterr()
    assert "wrote labels" in captured.out
    one = np.asarray(read_mask(tmp_path / "one.zarr").data)
    for name in ("local.zarr", "remote.zarr"):
        assert np.array_equal(np.asarray(read_mask(tmp_path / name).data), one)
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        assert cli(files, tmp_path / "x.zarr", "--scheduler", "tcp://127.0.0.1:9") == 2
    assert "Cannot reach the dask scheduler" in capsys.readouterr().err
    assert not (tmp_path / "x.zarr").exists()

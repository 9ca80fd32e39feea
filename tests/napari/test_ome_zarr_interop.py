"""Every OME-Zarr napari-xrm-al writes validates with ome-zarr-models and opens in
ome-zarr-py and napari-ome-zarr; masks in the layout before 0.2 still read."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zarr
from napari.layers import Labels
from napari_ome_zarr._reader import napari_get_reader
from ome_zarr.io import parse_url
from ome_zarr.reader import Label, Reader
from ome_zarr_models import open_ome_zarr
from ome_zarr_models.v05.image_label import ImageLabel

from napari_xrm_al._napari.reader import read_volume
from napari_xrm_al._napari.writer import CLASSES_KEY, write_ome_labels
from napari_xrm_al.classes import ClassTable
from napari_xrm_al.cli import main
from napari_xrm_al.core.events import run_to_end
from napari_xrm_al.core.synthetic.sample import make_hbm_sample, write_sample
from napari_xrm_al.io.mask_formats import ATTRS_KEY
from napari_xrm_al.io.mask_reader import read_mask
from napari_xrm_al.io.masks import write_mask
from napari_xrm_al.widgets.steps.predict import export_mask

VOXEL = (2.0, 0.5, 0.25)
CLASSES = ClassTable.hbm()


@pytest.fixture
def labels() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 5, size=(6, 20, 18), dtype=np.uint8)


def _by_write_mask(folder: Path, labels: np.ndarray) -> Path:
    return write_mask(folder / "m.ome.zarr", labels, CLASSES, voxel_size=VOXEL)


def _by_widget_export(folder: Path, labels: np.ndarray) -> Path:
    job = export_mask(folder / "m.ome.zarr", labels, CLASSES, VOXEL, {"model": "x"})
    return run_to_end(job)


def _by_napari_writer(folder: Path, labels: np.ndarray) -> Path:
    data, meta, _ = Labels(
        labels,
        name="my layer",
        scale=VOXEL,
        units="um",
        metadata={CLASSES_KEY: CLASSES.to_dict()},
    ).as_layer_data_tuple()
    return Path(write_ome_labels(str(folder / "m.ome.zarr"), data, meta)[0])


def _by_cli_predict(folder: Path, labels: np.ndarray, tiny_model_file) -> Path:
    paths = write_sample(folder, make_hbm_sample(seed=0, shape=(8, 32, 32)))
    model = tiny_model_file(folder / "model.pt")
    out = folder / "pred.ome.zarr"
    args = ["predict", "--image", str(paths["image"]), "--model", str(model)]
    assert main([*args, "--out", str(out), "--threads", "1", "--quiet"]) == 0
    return out


WRITERS: dict[str, Callable[..., Path]] = {
    "write_mask": _by_write_mask,
    "widget export": _by_widget_export,
    "napari writer": _by_napari_writer,
    "CLI predict": _by_cli_predict,
}


@pytest.fixture(params=list(WRITERS))
def written(request, tmp_path, labels, tiny_model_file) -> tuple[Path, np.ndarray]:
    """(an OME-Zarr mask, the labels it holds) from each place that writes one."""
    extra = (tiny_model_file,) if request.param == "CLI predict" else ()
    path = WRITERS[request.param](tmp_path, labels, *extra)
    return path, np.asarray(read_mask(path).data)


def test_every_export_validates_with_ome_zarr_models(written) -> None:
    path, _ = written
    model = open_ome_zarr(path)
    assert isinstance(model, ImageLabel)
    ImageLabel.from_zarr(zarr.open_group(path, mode="r"))  # strict, no guessing
    image_label = model.attributes.ome.image_label
    assert image_label is not None and image_label.version == "0.5"
    values = [c.label_value for c in image_label.colors]
    assert values == [p.label_value for p in image_label.properties] == [1, 2, 3, 4]


def test_every_export_opens_with_ome_zarr_py(written) -> None:
    path, data = written
    nodes = [n for n in Reader(parse_url(str(path)))() if n.first(Label)]
    assert len(nodes) == 1
    np.testing.assert_array_equal(nodes[0].data[0].compute(), data)
    names = {k: v["class"] for k, v in nodes[0].metadata["properties"].items()}
    assert names == {i + 1: n for i, n in enumerate(CLASSES.names)}


def test_every_export_opens_with_napari_ome_zarr(written) -> None:
    path, data = written
    reader = napari_get_reader(str(path))
    assert reader is not None
    [(pyramid, meta, layer_type)] = reader()
    assert layer_type == "labels"
    np.testing.assert_array_equal(np.asarray(pyramid[0]), data)
    layer = Labels(pyramid, **meta)
    void = [int(CLASSES.colours[3][i : i + 2], 16) / 255 for i in (1, 3, 5)]
    np.testing.assert_allclose(layer.colormap.map(4)[:3], void, atol=1e-6)
    assert layer.colormap.map(0)[3] == 0  # not labelled: transparent
    assert list(layer.features["class"]) == list(CLASSES.names)


def test_voxel_size_is_the_ome_scale(tmp_path, labels) -> None:
    path = _by_napari_writer(tmp_path, labels)
    [node] = [n for n in Reader(parse_url(str(path)))() if n.first(Label)]
    transforms = node.metadata["coordinateTransformations"][0]
    assert transforms[0]["scale"] == pytest.approx(VOXEL)
    assert [a["unit"] for a in node.metadata["axes"]] == ["micrometer"] * 3
    assert read_mask(path).name == "my_layer"


def _mask_before_0_2(path: Path, labels: np.ndarray, name: str) -> Path:
    """The layout napari-xrm-al 0.1 wrote: the label image at ``labels/<name>``."""
    new = write_mask(path.with_name("new.ome.zarr"), labels, CLASSES, name=name)
    attrs = zarr.open_group(new, mode="r").attrs.asdict()
    root = zarr.open_group(path, mode="w", attributes={ATTRS_KEY: attrs[ATTRS_KEY]})
    group = root.create_group("labels", attributes={"ome": {"labels": [name]}})
    group.create_group(name, attributes=attrs).create_array("0", data=labels)
    return path


@pytest.mark.parametrize("inner", ["", "labels/prediction"])
def test_masks_in_the_layout_before_0_2_still_read(tmp_path, labels, inner) -> None:
    path = _mask_before_0_2(tmp_path / "old.ome.zarr", labels, "prediction")
    mask = read_mask(path / inner)
    np.testing.assert_array_equal(mask.data[:], labels)
    assert mask.classes == CLASSES and mask.name == "prediction"
    [(data, meta, kind)] = read_volume(str(path))
    assert kind == "labels" and meta["name"] == "prediction"

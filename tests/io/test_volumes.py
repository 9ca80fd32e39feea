"""Opening volumes: every format round-trips shape, dtype, values and voxel size,
lazily."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr
from ome_zarr.writer import write_image
from tifffile.zarr import ZarrFileSequenceStore, ZarrTiffStore
from zarr.storage import LocalStore

from napari_xrm_al.io import tiff as tiff_io
from napari_xrm_al.io.volume_axes import MultichannelError
from napari_xrm_al.io.volumes import Volume, open_volume

SHAPE = (12, 20, 24)


def ramp(shape=SHAPE, dtype=np.uint16) -> np.ndarray:
    """Distinct values per voxel, so any mix-up of slices shows."""
    return (np.arange(np.prod(shape)) % 50_000).reshape(shape).astype(dtype)


def check(volume: Volume, expected: np.ndarray, fmt: str) -> None:
    assert volume.fmt == fmt
    assert volume.shape == expected.shape
    assert volume.dtype == expected.dtype
    z = expected.shape[0] // 2
    np.testing.assert_array_equal(np.asarray(volume.data[z]), expected[z])
    np.testing.assert_array_equal(np.asarray(volume.data[:, 3, 4]), expected[:, 3, 4])
    low, high = volume.contrast_limits
    assert expected.min() <= low < high <= expected.max()


class ChunkCounter:
    """Counts chunk reads of a zarr store class (metadata reads excluded)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, store_cls: type) -> None:
        self.keys: list[str] = []
        original = store_cls.get

        async def get(store, key, *args, **kwargs):
            if not key.rsplit("/", 1)[-1].startswith((".z", "zarr.json")):
                self.keys.append(key)
            return await original(store, key, *args, **kwargs)

        monkeypatch.setattr(store_cls, "get", get)


# -- TIFF ------------------------------------------------------------------
def test_imagej_tiff_is_memory_mapped_with_calibration(tmp_path):
    data = ramp()
    path = tmp_path / "scan.tif"
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        resolution=(1 / 0.25, 1 / 0.3),
        metadata={"spacing": 0.5, "unit": "micron", "axes": "ZYX"},
    )
    volume = open_volume(path)
    check(volume, data, "tiff")
    assert isinstance(volume.data, np.memmap)
    assert volume.voxel_size == pytest.approx((0.5, 0.3, 0.25))
    assert volume.unit == "µm"
    assert volume.path == path


def test_compressed_tiff_is_read_page_by_page(tmp_path, monkeypatch):
    data = ramp((64, 16, 16))
    path = tmp_path / "scan.tiff"
    tifffile.imwrite(path, data, compression="zlib")
    counter = ChunkCounter(monkeypatch, ZarrTiffStore)
    volume = open_volume(path)
    assert isinstance(volume.data, zarr.Array)
    assert 0 < len(counter.keys) < 64 // 2  # the contrast subsample, not every page
    check(volume, data, "tiff")
    assert volume.voxel_size is None and volume.unit is None


def test_bigtiff(tmp_path):
    data = ramp(dtype=np.float32)
    path = tmp_path / "scan.btf"
    tifffile.imwrite(path, data, bigtiff=True)
    volume = open_volume(path)
    check(volume, data, "tiff")
    assert isinstance(volume.data, np.memmap)


def test_ome_tiff_physical_size_and_pyramid(tmp_path):
    data = ramp((12, 32, 32))
    path = tmp_path / "scan.ome.tif"
    meta = {
        "axes": "ZYX",
        "PhysicalSizeX": 0.7,
        "PhysicalSizeY": 0.7,
        "PhysicalSizeZ": 1.5,
        "PhysicalSizeXUnit": "nm",
    }
    with tifffile.TiffWriter(path, ome=True) as tif:
        tif.write(data, subifds=1, metadata=meta)
        tif.write(data[:, ::2, ::2], subfiletype=1)
    volume = open_volume(path)
    check(volume, data, "tiff")
    assert volume.voxel_size == pytest.approx((1.5, 0.7, 0.7))
    assert volume.unit == "nm"
    assert [level.shape for level in volume.levels] == [(12, 32, 32), (12, 16, 16)]


def test_imagej_hyperstack_channel(tmp_path):
    data = ramp((6, 3, 10, 12))  # Z C Y X
    path = tmp_path / "hyper.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "ZCYX"})
    with pytest.raises(MultichannelError) as info:
        open_volume(path)
    assert info.value.n_channels == 3 and not info.value.rgb
    volume = open_volume(path, channel=1)
    check(volume, data[:, 1], "tiff")
    assert "Channel 1 of 3 is used." in volume.notes


def test_imagej_channels_without_slices_are_read_as_z(tmp_path):
    data = ramp((6, 10, 12))
    path = tmp_path / "scan.tif"
    tifffile.imwrite(path, data, imagej=True)  # tifffile stores this as 6 channels
    volume = open_volume(path)
    check(volume, data, "tiff")
    assert any("read as z slices" in note for note in volume.notes)


def test_rgb_stack_channel(tmp_path):
    data = ramp((5, 8, 9, 3), np.uint8)
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, data, photometric="rgb")
    with pytest.raises(MultichannelError) as info:
        open_volume(path)
    assert info.value.rgb and info.value.n_channels == 3
    check(open_volume(path, channel=2), data[..., 2], "tiff")


# -- folders and lists of slices ------------------------------------------
def write_slices(folder, data, names=None, **kwargs):
    folder.mkdir()
    names = names or [f"slice_{i}.tif" for i in range(len(data))]
    for name, plane in zip(names, data, strict=True):
        tifffile.imwrite(folder / name, plane, **kwargs)
    return [folder / n for n in names]


def test_folder_of_slices_natural_order_and_lazy(tmp_path, monkeypatch):
    data = ramp((40, 6, 7))
    # written in an order where plain sorting would put slice_10 before slice_2
    write_slices(
        tmp_path / "export",
        data,
        imagej=True,
        resolution=(2.0, 2.0),
        metadata={"unit": "um"},
    )
    (tmp_path / "export" / "notes.txt").write_text("not a slice")
    (tmp_path / "export" / "._slice_0.tif").write_bytes(b"macOS resource fork")
    reads = []
    original = tiff_io._read_slice
    monkeypatch.setattr(
        tiff_io, "_read_slice", lambda f, **kw: reads.append(f) or original(f, **kw)
    )
    volume = open_volume(tmp_path / "export")
    assert isinstance(volume.data.store, ZarrFileSequenceStore)
    assert len(reads) < len(data)
    check(volume, data, "tiff-folder")
    assert volume.voxel_size == pytest.approx((0.5, 0.5, 0.5))
    assert any("slice spacing" in note for note in volume.notes)


def test_list_of_slices_keeps_given_order(tmp_path):
    data = ramp((3, 8, 8))
    files = write_slices(tmp_path / "s", data)
    volume = open_volume([files[2], files[0], files[1]])
    check(volume, data[[2, 0, 1]], "tiff-folder")
    assert volume.path == tmp_path / "s"


# -- zarr and OME-Zarr ----------------------------------------------------
def test_zarr_v2_with_voxel_size_attr(tmp_path):
    data = ramp()
    path = tmp_path / "scan.zarr"
    array = zarr.create_array(
        path, shape=data.shape, dtype=data.dtype, chunks=(4, 20, 24), zarr_format=2
    )
    array[:] = data
    array.attrs.update({"voxel_size": [2.0, 1.0, 1.0], "unit": "micrometer"})
    volume = open_volume(path)
    check(volume, data, "zarr")
    assert volume.voxel_size == (2.0, 1.0, 1.0) and volume.unit == "µm"


def test_zarr_v3_reads_only_a_few_chunks(tmp_path, monkeypatch):
    data = ramp((64, 16, 16))
    path = tmp_path / "scan.zarr"
    array = zarr.create_array(
        path, shape=data.shape, dtype=data.dtype, chunks=(2, 8, 8),
        dimension_names=("z", "y", "x"),
    )  # fmt: skip
    array[:] = data
    array.attrs["napari_xrm_al"] = {"voxel_size": {"z": 3, "y": 2, "x": 1}}
    counter = ChunkCounter(monkeypatch, LocalStore)
    volume = open_volume(path)
    assert 0 < len(counter.keys) <= 16 < 32 * 2 * 2
    assert isinstance(volume.data, zarr.Array)
    check(volume, data, "zarr")
    assert volume.voxel_size == (3.0, 2.0, 1.0) and volume.unit is None


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_ome_zarr_multiscale(tmp_path, zarr_format):
    data = ramp((8, 32, 32))
    path = tmp_path / "scan.ome.zarr"
    write_image(
        data,
        zarr.open_group(path, mode="w", zarr_format=zarr_format),
        axes="zyx",
        scale={"z": 2.0, "y": 0.5, "x": 0.5},
        axes_units=dict.fromkeys("zyx", "micrometer"),
        scale_factors=[2],
    )
    volume = open_volume(path)
    check(volume, data, "ome-zarr")
    assert [level.shape for level in volume.levels] == [(8, 32, 32), (8, 16, 16)]
    assert volume.voxel_size == (2.0, 0.5, 0.5) and volume.unit == "µm"


def test_ome_zarr_5d_drops_time_and_picks_channel(tmp_path):
    data = ramp((1, 2, 6, 16, 16))  # t c z y x
    path = tmp_path / "tczyx.ome.zarr"
    write_image(data, zarr.open_group(path, mode="w"), axes="tczyx", scale_factors=[])
    with pytest.raises(MultichannelError):
        open_volume(path)
    volume = open_volume(path, channel=1)
    check(volume, data[0, 1], "ome-zarr")
    assert volume.voxel_size is None  # all-1 scale, no unit: not calibrated


# -- values ---------------------------------------------------------------
def test_nan_and_inf_are_missing_for_contrast(tmp_path):
    data = ramp(dtype=np.float32)
    data[:, 0, :] = np.nan
    data[:, 1, :] = np.inf
    path = tmp_path / "float.tif"
    tifffile.imwrite(path, data)
    volume = open_volume(path)
    finite = data[np.isfinite(data)]
    low, high = volume.contrast_limits
    assert finite.min() <= low < high <= finite.max()
    assert sum("NaN" in note for note in volume.notes) == 1

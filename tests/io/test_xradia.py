"""ZEISS Xradia ``.txm`` / ``.txrm`` files: values, voxel size, instrument
metadata, reference correction, tolerance of missing optional streams, and
slice-by-slice reading.

No real ZEISS file can be shipped, so the files are written by
``tests/ole_writer.py``, a minimal [MS-CFB] compound-file writer, with the
streams public readers use (dxchange ``dxchange/reader.py``, txrm2tiff
``src/txrm2tiff/xradia_properties/stream_dtypes.py``): ``ImageInfo/ImageWidth``,
``ImageHeight``, ``NoOfImages``, ``ImagesTaken``, ``DataType``, ``PixelSize``,
``XrayVoltage``, ``XrayCurrent``, ``ExpTimes``, ``Date``,
``SampleInfo/SampleID``, ``ImageData<ceil(k/100)>/Image<k>`` and
``ReferenceData/Image`` + ``ReferenceData/DataType``.
"""

from __future__ import annotations

import struct

import numpy as np
import olefile
import pytest
from tests.ole_writer import break_stream, write_compound_file, write_xradia

from napari_xrm_al.errors import InputError
from napari_xrm_al.io.volumes import open_volume
from napari_xrm_al.io.xradia import image_stream

INSTRUMENT = {
    "sample": "HBM-17",
    "acquired": "05/14/2024 10:31:07.25",
    "voltage": "80 kV",
    "current": "87.5 µA",
    "exposure": "2 s",
}


def scan(shape=(6, 40, 64), dtype=np.uint16) -> np.ndarray:
    values = np.arange(np.prod(shape)).reshape(shape) % 1000
    return (values * 1.5).astype(dtype) if dtype == np.float32 else values.astype(dtype)


def test_image_streams_are_grouped_by_hundred():
    assert [image_stream(i) for i in (0, 99, 100, 249)] == [
        "ImageData1/Image1",
        "ImageData1/Image100",
        "ImageData2/Image101",
        "ImageData3/Image250",
    ]


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_txm_opens_with_shape_dtype_values_voxel_size_and_instrument(tmp_path, dtype):
    images = scan(dtype=dtype)
    path = write_xradia(tmp_path / "recon.txm", images, pixel_size=0.7)
    volume = open_volume(path)
    assert volume.fmt == "txm"
    assert volume.shape == images.shape and volume.dtype == images.dtype
    np.testing.assert_array_equal(volume.read(), images)
    assert volume.voxel_size == (0.7, 0.7, 0.7) and volume.unit == "µm"
    assert volume.instrument == INSTRUMENT
    assert volume.notes == []


def test_slices_past_the_first_hundred_come_from_their_storages(tmp_path):
    images = scan((250, 3, 4))
    volume = open_volume(write_xradia(tmp_path / "tall.txm", images))
    for z in (0, 99, 100, 199, 200, 249):
        np.testing.assert_array_equal(volume.read(z), images[z])
    np.testing.assert_array_equal(volume.read(), images)


def test_txrm_projections_are_divided_by_the_reference(tmp_path):
    images = scan()
    reference = np.full(images.shape[1:], 4.0, np.float32)
    reference[0, 0] = 0  # a dead pixel
    path = write_xradia(tmp_path / "tomo.txrm", images, reference=reference)
    volume = open_volume(path)
    assert volume.fmt == "txrm" and volume.dtype == np.float32
    data = volume.read()
    assert np.isnan(data[:, 0, 0]).all()
    np.testing.assert_allclose(data[:, 1:], images[:, 1:] / 4.0)
    assert volume.instrument["reference"] == "applied (image / reference)"
    assert any("divided by the stored reference image" in n for n in volume.notes)
    assert any("projections (one per angle)" in n for n in volume.notes)


def test_txm_keeps_its_values_when_a_reference_is_stored(tmp_path):
    images = scan()
    reference = np.full(images.shape[1:], 4, np.uint16)
    volume = open_volume(write_xradia(tmp_path / "r.txm", images, reference=reference))
    np.testing.assert_array_equal(volume.read(), images)
    assert volume.instrument["reference"] == "stored, not applied"


def test_reference_of_another_size_is_noted_and_not_applied(tmp_path):
    images = scan()
    path = write_xradia(
        tmp_path / "tomo.txrm", images, reference=np.ones((3, 3), np.float32)
    )
    volume = open_volume(path)
    np.testing.assert_array_equal(volume.read(), images)
    assert volume.dtype == np.uint16
    assert any("does not fit the 40 × 64 images" in n for n in volume.notes)


OPTIONAL = [
    "ImageInfo/XrayVoltage",
    "ImageInfo/XrayCurrent",
    "ImageInfo/ExpTimes",
    "ImageInfo/Date",
    "SampleInfo/SampleID",
    "ImageInfo/PixelSize",
]


def test_missing_optional_streams_are_tolerated(tmp_path):
    images = scan()
    volume = open_volume(write_xradia(tmp_path / "bare.txm", images, omit=OPTIONAL))
    np.testing.assert_array_equal(volume.read(), images)
    assert volume.instrument == {} and volume.voxel_size is None


def test_older_stream_names_and_missing_counts_and_type(tmp_path):
    images = scan()
    path = write_xradia(
        tmp_path / "old.txm",
        images,
        omit=[
            "ImageInfo/XrayVoltage",
            "ImageInfo/ImagesTaken",
            "ImageInfo/NoOfImages",
            "ImageInfo/DataType",
        ],
        replace={
            "ImageInfo/Voltage": struct.pack("<2f", 40, 60),
            "ImageInfo/Date": b"05/14/24 10:31:0705/14/24 10:32:09",
        },
    )
    volume = open_volume(path)
    np.testing.assert_array_equal(volume.read(), images)
    assert volume.instrument["voltage"] == "40 to 60 kV"
    assert volume.instrument["acquired"] == "05/14/24 10:31:07"
    assert "ImageInfo gives no image count; the 6 stored images are used." in (
        volume.notes
    )
    assert "ImageInfo/DataType is missing; the pixels are read as uint16." in (
        volume.notes
    )


def test_no_of_images_counts_when_images_taken_is_missing(tmp_path):
    images = scan()
    path = write_xradia(tmp_path / "n.txm", images, omit=["ImageInfo/ImagesTaken"])
    assert open_volume(path).shape == images.shape


def test_an_ole_file_of_any_name_is_recognised(tmp_path):
    path = write_xradia(tmp_path / "scan.bin", scan())
    assert open_volume(path).fmt == "txm"


def test_reading_a_slice_opens_only_that_slices_stream(tmp_path, monkeypatch):
    volume = open_volume(write_xradia(tmp_path / "lazy.txm", scan((150, 40, 64))))
    opened: list[str] = []
    original = olefile.OleFileIO.openstream

    def spy(self, name):
        opened.append(name)
        return original(self, name)

    monkeypatch.setattr(olefile.OleFileIO, "openstream", spy)
    volume.read((120, slice(0, 8), slice(None)))
    assert opened == ["ImageData2/Image121"]


def test_a_damaged_slice_leaves_the_others_readable(tmp_path):
    """Slice 1 is not among the slices sampled for the contrast limits, so the
    file opens; slice 0 reads, and slice 1 fails with one sentence."""
    images = scan((40, 40, 64))
    path = write_xradia(tmp_path / "scan.txm", images)
    break_stream(path, "Image2")
    volume = open_volume(path)
    np.testing.assert_array_equal(volume.read(0), images[0])
    with pytest.raises(InputError) as info:
        volume.read(1)
    assert str(info.value) == (
        f"{path}: is truncated or damaged: ImageData1/Image2 gave 0 of its 5120 bytes"
    )


def test_the_writer_makes_files_olefile_reads_without_complaint(tmp_path):
    path = write_compound_file(
        tmp_path / "x.cfb", {"A/b": b"tiny", "A/c": bytes(5000), "Long name": b"z"}
    )
    with olefile.OleFileIO(str(path), raise_defects=olefile.DEFECT_UNSURE) as ole:
        assert sorted(ole.listdir()) == [["A", "b"], ["A", "c"], ["Long name"]]
        assert ole.openstream("A/c").read() == bytes(5000)
        assert ole.openstream("a/B").read() == b"tiny"
        assert ole.parsing_issues == []

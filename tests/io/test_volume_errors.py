"""Bad input: one sentence naming the file and the problem, and nothing on disk
changes."""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from tests.ole_writer import write_compound_file, write_xradia

from napari_xrm_al.errors import InputError
from napari_xrm_al.io import volumes
from napari_xrm_al.io.volume_axes import MultichannelError
from napari_xrm_al.io.volumes import open_volume


def snapshot(folder: Path) -> dict[str, tuple[int, float, str]]:
    """Every file under ``folder`` with its size, mtime and content hash."""
    return {
        str(p.relative_to(folder)): (
            p.stat().st_size,
            p.stat().st_mtime,
            hashlib.sha256(p.read_bytes()).hexdigest(),
        )
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def refuses(path, *words: str, **kwargs) -> InputError:
    """open_volume(path) raises one InputError naming ``path`` and ``words``,
    and leaves the folder as it was."""
    folder = Path(path if not isinstance(path, list) else path[0]).parent
    before = snapshot(folder)
    with pytest.raises(InputError) as info:
        open_volume(path, **kwargs)
    message = str(info.value)
    named = info.value.path
    assert message.startswith(f"{named}: "), message
    assert "\n" not in message and "Traceback" not in message
    for word in words:
        assert word in message, message
    assert snapshot(folder) == before
    return info.value


def tif(path: Path, data: np.ndarray, **kwargs) -> Path:
    if not kwargs.get("imagej"):
        kwargs.setdefault("photometric", "minisblack")
    tifffile.imwrite(path, data, **kwargs)
    return path


def test_missing_path(tmp_path):
    err = refuses(tmp_path / "scan.tif", "does not exist")
    assert err.path == str(tmp_path / "scan.tif")


def test_empty_file(tmp_path):
    (tmp_path / "scan.tif").write_bytes(b"")
    refuses(tmp_path / "scan.tif", "scan.tif", "empty")


def test_not_a_tiff_named_tif(tmp_path):
    (tmp_path / "scan.tif").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    refuses(tmp_path / "scan.tif", "scan.tif", "not a TIFF file")


def test_unknown_file(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    refuses(tmp_path / "notes.txt", "notes.txt", "not a TIFF file or a zarr store")


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_truncated_tiff(tmp_path, compression):
    path = tif(
        tmp_path / "scan.tif",
        np.ones((20, 32, 32), np.uint16) * 7,
        compression=compression,
    )
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    refuses(path, "scan.tif", "truncated")


def test_a_stack_with_one_odd_page_is_refused_not_shortened(tmp_path):
    """A damaged page header (another pixel type) must not drop that slice
    and shift the rest; an extra image after the stack (a thumbnail) is fine."""
    stack = np.arange(4 * 16 * 16, dtype=np.uint16).reshape(4, 16, 16)
    path = tif(tmp_path / "scan.tif", stack, metadata=None)  # pages, no shape
    with tifffile.TiffFile(path) as read:
        offset = read.pages[1].tags["BitsPerSample"].valueoffset
    data = bytearray(path.read_bytes())
    data[offset : offset + 2] = struct.pack("<H", 32)  # page 2 now says uint32
    path.write_bytes(bytes(data))
    refuses(path, "page 2 of the stack is unlike the pages around it")

    with tifffile.TiffWriter(path) as writer:
        writer.write(stack, photometric="minisblack")
        writer.write(np.zeros((8, 8), np.uint8))
    volume = open_volume(path)
    assert volume.shape == stack.shape and "holds 2 images" in volume.notes[0]
    np.testing.assert_array_equal(volume.read(), stack)


def test_2d_image(tmp_path):
    path = tif(tmp_path / "photo.tif", np.zeros((30, 40), np.uint8))
    refuses(
        path, "photo.tif", "2D image (30 × 40)", "not a volume", "folder of 2D slices"
    )


def hyperstack(path: Path) -> Path:
    """An ImageJ stack of 4 slices of 2 channels (``ZCYX``) at ``path``."""
    zcyx = np.zeros((4, 2, 8, 8), np.uint16)
    return tif(path, zcyx, imagej=True, metadata={"axes": "ZCYX"})


def test_2d_rgb_image(tmp_path):
    path = tif(
        tmp_path / "photo.tif", np.zeros((30, 40, 3), np.uint8), photometric="rgb"
    )
    refuses(path, "RGB 2D image", "not a volume")


def test_rgb_stack_needs_a_channel(tmp_path):
    path = tif(
        tmp_path / "rgb.tif", np.zeros((4, 30, 40, 3), np.uint8), photometric="rgb"
    )
    err = refuses(path, "rgb.tif", "RGB", "3 channels", "channel=", "--channel")
    assert isinstance(err, MultichannelError)


def test_multichannel_stack_needs_a_channel(tmp_path):
    path = hyperstack(tmp_path / "hyper.tif")
    refuses(path, "multichannel", "2 channels", "channel=")


def test_channel_out_of_range(tmp_path):
    path = hyperstack(tmp_path / "hyper.tif")
    refuses(path, "channel 5 does not exist", channel=5)
    single = tif(tmp_path / "single.tif", np.zeros((4, 8, 8), np.uint16))
    refuses(single, "single channel", channel=1)


def test_4d_names_the_shape(tmp_path):
    path = tif(tmp_path / "movie.tif", np.zeros((3, 5, 8, 8), np.uint16))
    refuses(path, "movie.tif", "4 dimensions", "(3, 5, 8, 8)", "only 3D")


@pytest.mark.parametrize(
    ("dtype", "word"), [(np.complex64, "complex"), (bool, "boolean")]
)
def test_non_numeric_tiff(tmp_path, dtype, word):
    path = tif(tmp_path / "odd.tif", np.zeros((4, 8, 8), dtype))
    refuses(path, "odd.tif", word, str(np.dtype(dtype)))


@pytest.mark.parametrize(
    ("dtype", "word"),
    [(np.dtype([("a", "<u2"), ("b", "<f4")]), "structured"), (np.dtype("U3"), "text")],
)
@pytest.mark.filterwarnings("ignore::zarr.errors.UnstableSpecificationWarning")
def test_non_numeric_zarr(tmp_path, dtype, word):
    path = tmp_path / "odd.zarr"
    zarr.create_array(path, shape=(4, 8, 8), dtype=dtype, chunks=(4, 8, 8))
    refuses(path, "odd.zarr", word)


def test_folder_without_slices_or_zarr(tmp_path):
    folder = tmp_path / "stuff"
    folder.mkdir()
    (folder / "readme.txt").write_text("x")
    refuses(folder / ".", "neither a zarr store nor holds TIFF slices")


def test_zarr_group_without_multiscales(tmp_path):
    group = zarr.open_group(tmp_path / "g.zarr", mode="w")
    group.create_array("a", shape=(4, 4, 4), dtype="u2")
    group.create_array("b", shape=(4, 4, 4), dtype="u2")
    refuses(tmp_path / "g.zarr", "g.zarr", "without OME-Zarr multiscales", "a, b")


def test_slices_of_different_shapes(tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    for i in range(3):
        tif(folder / f"s{i}.tif", np.zeros((8, 8 + (i == 2)), np.uint8))
    refuses(folder, "s2.tif", "unlike the first slice")


def test_folder_of_3d_files(tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    for i in range(2):
        tif(folder / f"v{i}.tif", np.zeros((3, 8, 8), np.uint8))
    refuses(folder, "v0.tif", "not a 2D slice")


def test_list_with_a_non_tiff(tmp_path):
    good = tif(tmp_path / "a.tif", np.zeros((8, 8), np.uint8))
    (tmp_path / "b.png").write_bytes(b"\x89PNG")
    refuses([good, tmp_path / "b.png"], "b.png", "not a TIFF")


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="root reads files whatever their permissions",
)
def test_no_read_permission_real(tmp_path):
    path = tif(tmp_path / "scan.tif", np.zeros((4, 8, 8), np.uint8))
    path.chmod(0)
    try:
        refuses(path, "scan.tif", "permission denied")
    finally:
        path.chmod(0o644)


def test_no_read_permission_simulated(tmp_path, monkeypatch):
    # As root chmod cannot deny reading, so the permission check is faked.
    path = tif(tmp_path / "scan.tif", np.zeros((4, 8, 8), np.uint8))
    monkeypatch.setattr(volumes.os, "access", lambda p, mode: Path(p) != path)
    refuses(path, "scan.tif", "permission denied")


def test_permission_error_from_the_library(tmp_path, monkeypatch):
    path = tif(tmp_path / "scan.tif", np.zeros((4, 8, 8), np.uint8))

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tifffile, "TiffFile", denied)
    refuses(path, "scan.tif", "permission denied")


# -- ZEISS Xradia .txm / .txrm (files from tests/ole_writer.py) -----------------
XRADIA = np.arange(3 * 40 * 64, dtype=np.uint16).reshape(3, 40, 64)


def _txm(path: Path, **changes) -> Path:
    return write_xradia(path, XRADIA, **changes)


def _truncated(path: Path) -> Path:
    _txm(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _text(path: Path) -> Path:
    path.write_text("exported from the scanner\n" * 50)
    return path


def _other_ole(path: Path) -> Path:
    return write_compound_file(path, {"WordDocument": b"not an image"})


DAMAGED_XRADIA = {
    "truncated": (
        _truncated,
        "is truncated or corrupt (olefile: incomplete OLE sector)",
    ),
    "not an OLE file": (_text, "is not a ZEISS .txm/.txrm file (it has no OLE"),
    "OLE but not Xradia": (_other_ole, "not a ZEISS Xradia image (it has no ImageInfo"),
    "no ImageData": (
        lambda p: _txm(p, omit=[f"ImageData1/Image{k}" for k in (1, 2, 3)]),
        "holds no image data (no ImageData1/Image1 stream)",
    ),
    "an image missing": (
        lambda p: _txm(p, omit=["ImageData1/Image3"]),
        "is incomplete: ImageData1/Image3 is missing (3 images expected)",
    ),
    "an image too short": (
        lambda p: _txm(p, replace={"ImageData1/Image2": bytes(5000)}),
        "ImageData1/Image2: 5000 bytes, not the 5120 of 40 × 64 uint16 pixels",
    ),
    "wrong width": (
        lambda p: _txm(p, replace={"ImageInfo/ImageWidth": struct.pack("<i", 65)}),
        "damaged image stream ImageData1/Image1: 5120 bytes, not the 5200",
    ),
    "zero height": (
        lambda p: _txm(p, replace={"ImageInfo/ImageHeight": struct.pack("<i", 0)}),
        "gives an image size of 64 × 0 pixels",
    ),
    "unknown pixel type": (
        lambda p: _txm(p, replace={"ImageInfo/DataType": struct.pack("<i", 12)}),
        "has an unsupported pixel type (ImageInfo/DataType 12)",
    ),
}


@pytest.mark.parametrize("case", DAMAGED_XRADIA)
def test_damaged_xradia_file(tmp_path, case):
    make, words = DAMAGED_XRADIA[case]
    path = make(tmp_path / "scan.txm")
    refuses(path, str(path), words)


def test_empty_txm(tmp_path):
    (tmp_path / "scan.txrm").write_bytes(b"")
    refuses(tmp_path / "scan.txrm", "scan.txrm", "is empty")

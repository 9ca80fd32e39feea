"""``napari-xrm-al info``: describes a scan or a mask, and refuses bad input
with one line and exit status 2, writing nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from tests.ole_writer import write_xradia

from napari_xrm_al.classes import ClassTable
from napari_xrm_al.cli import main
from napari_xrm_al.io.array_reads import volume_fingerprint
from napari_xrm_al.io.masks import write_mask
from napari_xrm_al.io.volumes import open_volume
from napari_xrm_al.io.xradia import OLE_MAGIC


def test_info_describes_a_calibrated_stack(tmp_path, capsys):
    data = (np.arange(6 * 10 * 12) % 900).reshape(6, 10, 12).astype(np.uint16) + 100
    path = tmp_path / "scan.tif"
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        resolution=(2.0, 2.0),
        metadata={"spacing": 0.75, "unit": "um"},
    )
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"path:        {path}" in out
    assert "(6, 10, 12) (z, y, x)" in out
    assert "uint16" in out
    assert "0.75 × 0.5 × 0.5 µm" in out
    assert "memory-mapped" in out
    assert f"{data.min()} to {data.max()}" in out
    assert volume_fingerprint(open_volume(path).data) in out
    assert "image layer, scale (0.75, 0.5, 0.5)" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.tif"]


def test_info_channel_and_notes(tmp_path, capsys):
    data = np.zeros((5, 2, 8, 8), np.float32)
    data[:, 1] = 3.0
    data[0, 1, 0, 0] = np.nan
    path = tmp_path / "hyper.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "ZCYX"})
    assert main(["info", str(path), "--channel", "1"]) == 0
    out = capsys.readouterr().out
    assert "Channel 1 of 2 is used." in out
    assert "NaN" in out
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--channel" in err


def test_info_describes_a_mask(tmp_path, capsys):
    labels = np.zeros((4, 8, 8), np.uint8)
    labels[1:3, 2:5, 2:5] = 4
    path = write_mask(
        tmp_path / "voids.zarr", labels, ClassTable.hbm(), voxel_size=(1.0, 0.5, 0.5)
    )
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "napari-xrm-al mask" in out and "4 void" in out
    assert "labels layer" in out


def test_info_shows_the_instrument_metadata_of_a_zeiss_file(tmp_path, capsys):
    images = (np.arange(5 * 12 * 14) % 900).reshape(5, 12, 14).astype(np.uint16)
    reference = np.full((12, 14), 2, np.uint16)
    path = write_xradia(
        tmp_path / "tomo.txrm",
        images,
        pixel_size=1.5,
        reference=reference,
        voltage=110.0,
        current=90.9,
        exposure=1.5,
        sample="wafer 7 die 3",
    )
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    for row in (
        "format:      txrm",
        "shape:       (5, 12, 14) (z, y, x)",
        "dtype:       float32",
        "voxel size:  1.5 × 1.5 × 1.5 µm (z, y, x)",
        "sample:      wafer 7 die 3",
        "acquired:    05/14/2024 10:31:07.25",
        "voltage:     110 kV",
        "current:     90.9 µA",
        "exposure:    1.5 s",
        "reference:   applied (image / reference)",
    ):
        assert row in out, row
    assert any("values are transmission" in line for line in out)


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("bad.tif", b"", "is empty"),
        ("bad.tif", b"not a tiff at all", "is not a TIFF file"),
        ("bad.txm", b"not an OLE file", "is not a ZEISS .txm/.txrm file"),
        ("bad.txrm", OLE_MAGIC + bytes(100), "is truncated or corrupt (olefile:"),
    ],
)
def test_info_bad_file_is_one_line_and_exit_2(tmp_path, capsys, name, content, problem):
    path = tmp_path / name
    path.write_bytes(content)
    assert main(["info", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"napari-xrm-al: error: {path}: {problem}")
    assert captured.err.count("\n") == 1
    assert path.read_bytes() == content
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_info_in_a_real_process_prints_no_traceback(tmp_path):
    script = Path(sys.executable).with_name("napari-xrm-al")
    if not script.exists():
        pytest.skip("the napari-xrm-al script is not installed next to python")
    path = tmp_path / "bad.tif"
    data = np.ones((20, 16, 16), np.uint16)
    tifffile.imwrite(path, data, compression="zlib")
    path.write_bytes(path.read_bytes()[:600])
    result = subprocess.run(
        [str(script), "info", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith(
        f"napari-xrm-al: error: {path}: is truncated"
    )

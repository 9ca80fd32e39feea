"""The bump report as CSV, and the Python snippet of docs/metrology.md."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest

from napari_xrm_al.core.metrology.bumps import measure_bumps
from napari_xrm_al.core.metrology.report import CSV_COLUMNS, write_bumps_csv
from napari_xrm_al.errors import XrmError

# Dense HBM ids of solder and void.
SOLDER, VOID = 2, 3
DOC = Path(__file__).parents[3] / "docs" / "metrology.md"


def test_no_bumps_is_a_header_only_report(tmp_path):
    path = write_bumps_csv(tmp_path / "bumps.csv", [])
    assert path.read_text() == ",".join(CSV_COLUMNS) + "\n"


def test_unwritable_csv_is_a_user_error(tmp_path):
    with pytest.raises(XrmError, match="cannot be written"):
        write_bumps_csv(tmp_path / "missing" / "bumps.csv", [])


def test_csv_round_trip(tmp_path):
    mask = np.zeros((8, 10, 10), np.uint8)
    mask[1:7, 1:9, 1:9] = SOLDER
    mask[2:4, 2:4, 2:4] = VOID
    mask[0:3, 0:2, 0:2] = SOLDER  # a second, partial bump (touches the first)
    mask[5:8, 0:1, 9:10] = SOLDER  # a third, partial, apart
    bumps = measure_bumps(mask, solder_id=SOLDER, void_id=VOID, voxel_size=(1.0,) * 3)
    path = write_bumps_csv(tmp_path / "bumps.csv", bumps)
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert len(rows) == len(bumps) == 2
    for row, bump in zip(rows, bumps, strict=True):
        assert float(row["void_ratio"]) == bump.void_ratio
        assert float(row["z"]) == bump.z
        assert int(row["bbox_x1"]) == bump.bbox[5]
        assert row["pass"] == str(bump.passed) and row["partial"] == "True"
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_the_docs_python_snippet_writes_a_report(tmp_path, monkeypatch):
    section = DOC.read_text().split("## Python", 1)[1]
    code = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)[0]
    mask = np.zeros((6, 8, 8), np.uint8)
    mask[1:5, 1:7, 1:7] = 3  # annotation ids, as in the snippet: solder 3, void 4
    mask[2:3, 2:4, 2:4] = 4
    monkeypatch.chdir(tmp_path)
    namespace = {"mask": mask}
    exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102 - our own docs
    assert [b.void_voxels for b in namespace["bumps"]] == [4]
    with (tmp_path / "bumps.csv").open(newline="") as f:
        assert len(list(csv.DictReader(f))) == 1

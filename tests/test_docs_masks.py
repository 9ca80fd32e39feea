"""The snippets of docs/index.md#reading-masks-in-python run on masks written by
``napari-xrm-al predict`` (in each of the three formats)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from napari_xrm_al.classes import ClassTable
from napari_xrm_al.cli import main
from napari_xrm_al.core.synthetic.sample import make_hbm_sample, write_sample
from napari_xrm_al.io.mask_reader import read_mask

DOC = Path(__file__).parents[1] / "docs" / "index.md"


def mask_snippets() -> list[str]:
    """The Python code blocks of the section 'Reading masks in Python'."""
    section = DOC.read_text().split("### Reading masks in Python", 1)[1]
    section = re.split(r"\n#{1,3} ", section, maxsplit=1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


@pytest.fixture
def predicted(tmp_path, tiny_model_file, monkeypatch) -> Path:
    paths = write_sample(tmp_path, make_hbm_sample(seed=0, shape=(8, 32, 32)))
    model = tiny_model_file(tmp_path / "model.pt")
    for name in ("mask.ome.zarr", "mask.zarr", "mask.tif"):
        args = ["predict", "--image", str(paths["image"]), "--model", str(model)]
        assert main([*args, "--out", str(tmp_path / name), "--quiet"]) == 0
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_docs_snippets_read_predicted_masks(predicted) -> None:
    snippets = mask_snippets()
    assert len(snippets) == 3
    expected = np.asarray(read_mask("mask.ome.zarr").data)
    for code in snippets:
        namespace: dict = {}
        exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102 - our own docs
        if "labels" in namespace:
            np.testing.assert_array_equal(np.asarray(namespace["labels"]), expected)
        if "classes" in namespace and isinstance(namespace["classes"], dict):
            assert list(namespace["classes"].values()) == list(ClassTable.hbm().names)
        if "record" in namespace:
            assert namespace["record"]["name"] == "prediction"

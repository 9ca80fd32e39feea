"""The npe2 manifest is found, valid and shipped in the package."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from npe2 import PluginManifest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_MANIFEST = ROOT / "src" / "napari_xrm_al" / "napari.yaml"


def test_manifest_is_discovered_from_the_installed_distribution() -> None:
    manifest = PluginManifest.from_distribution("napari-xrm-al")
    assert manifest.name == "napari-xrm-al"
    assert manifest.display_name
    assert set(manifest.categories) == {"Segmentation", "Annotation"}
    manifest.validate_imports()
    contributions = manifest.contributions
    assert contributions.readers and contributions.writers and contributions.sample_data


def test_top_level_manifest_is_the_package_manifest_itself() -> None:
    top = ROOT / "napari.yaml"
    assert top.is_symlink()
    assert top.resolve() == PACKAGE_MANIFEST.resolve()


def test_built_wheel_ships_the_manifest_and_entry_point(tmp_path) -> None:
    pytest.importorskip("setuptools")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("napari_xrm_al-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert "napari_xrm_al/napari.yaml" in names
        shipped = zf.read("napari_xrm_al/napari.yaml").decode()
        entry_points = zf.read(next(n for n in names if n.endswith("entry_points.txt")))
    assert shipped == PACKAGE_MANIFEST.read_text()
    assert b"napari-xrm-al = napari_xrm_al:napari.yaml" in entry_points

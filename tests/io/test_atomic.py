"""Atomic writes: the final name holds the old result or the complete new one."""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path

import numpy as np
import pytest

from napari_xrm_al.io import atomic
from napari_xrm_al.io.atomic import (
    AtomicTarget,
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
)


class Boom(Exception):
    pass


def test_file_appears_only_on_exit_from_a_hidden_sibling(tmp_path: Path) -> None:
    final = tmp_path / "out.bin"
    with atomic_path(final) as tmp:
        assert tmp.parent == final.parent
        assert tmp.name.startswith(".out.bin.tmp-")
        tmp.write_bytes(b"new")
        assert not final.exists()
    assert final.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_exception_removes_temp_and_keeps_old_file(tmp_path: Path) -> None:
    final = tmp_path / "out.txt"
    final.write_text("old")
    with pytest.raises(Boom), atomic_path(final) as tmp:
        tmp.write_text("half")
        raise Boom
    assert final.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_directory_replaces_existing_directory(tmp_path: Path) -> None:
    final = tmp_path / "store.zarr"
    (final / "sub").mkdir(parents=True)
    (final / "sub" / "stale").write_text("old")
    with atomic_path(final, is_dir=True) as tmp:
        (tmp / "a").mkdir(parents=True)
        (tmp / "a" / "chunk").write_bytes(b"\x01")
        assert (final / "sub" / "stale").exists()  # old result kept meanwhile
    assert sorted(p.name for p in final.rglob("*")) == ["a", "chunk"]
    assert os.listdir(tmp_path) == ["store.zarr"]


def test_directory_exception_keeps_old_directory(tmp_path: Path) -> None:
    final = tmp_path / "store.zarr"
    final.mkdir()
    (final / "keep").write_text("old")
    with pytest.raises(Boom), atomic_path(final, is_dir=True) as tmp:
        tmp.mkdir()
        (tmp / "partial").write_text("x")
        raise Boom
    assert [p.name for p in final.iterdir()] == ["keep"]
    assert os.listdir(tmp_path) == ["store.zarr"]


def test_failed_swap_restores_old_directory(tmp_path: Path, monkeypatch) -> None:
    final = tmp_path / "store.zarr"
    final.mkdir()
    (final / "keep").write_text("old")
    real_replace = os.replace
    calls = []

    def flaky_replace(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if len(calls) == 2:  # moving the new directory in
            raise OSError("disk gone")
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", flaky_replace)
    with (
        pytest.raises(OSError, match="disk gone"),
        atomic_path(final, is_dir=True) as tmp,
    ):
        tmp.mkdir()
        (tmp / "new").write_text("x")
    assert [p.name for p in final.iterdir()] == ["keep"]
    assert calls[0][1].startswith(".store.zarr.old-")
    assert os.listdir(tmp_path) == ["store.zarr"]


def test_file_may_replace_a_directory(tmp_path: Path) -> None:
    final = tmp_path / "thing"
    final.mkdir()
    atomic_write_text(final, "now a file")
    assert final.read_text() == "now a file"


def test_uncommitted_target_is_cleaned_up_when_dropped(tmp_path: Path) -> None:
    target = AtomicTarget(tmp_path / "x.zarr", is_dir=True)
    target.tmp.mkdir()
    tmp = target.tmp
    del target
    gc.collect()
    assert not tmp.exists()
    assert os.listdir(tmp_path) == []


def test_target_commits_once(tmp_path: Path) -> None:
    target = AtomicTarget(tmp_path / "x.bin")
    target.tmp.write_bytes(b"1")
    assert target.commit() == (tmp_path / "x.bin").absolute()
    with pytest.raises(RuntimeError):
        target.commit()


def test_write_bytes_and_text_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "f"
    atomic_write_bytes(path, b"one")
    atomic_write_bytes(path, b"two")
    assert path.read_bytes() == b"two"
    atomic_write_text(path, "µm")
    assert path.read_text(encoding="utf-8") == "µm"


def test_write_json_keeps_key_order_and_accepts_numpy(tmp_path: Path) -> None:
    path = tmp_path / "meta.json"
    obj = {"z": np.int64(3), "a": np.float32(0.5), "arr": np.arange(3), "p": tmp_path}
    atomic_write_json(path, obj)
    text = path.read_text()
    assert text.startswith('{\n  "z": 3')
    assert json.loads(text) == {"z": 3, "a": 0.5, "arr": [0, 1, 2], "p": str(tmp_path)}


def test_write_json_rejects_unknown_objects_without_leaving_files(
    tmp_path: Path,
) -> None:
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "bad.json", {"x": object()})
    assert os.listdir(tmp_path) == []

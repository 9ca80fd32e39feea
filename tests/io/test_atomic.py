"""Atomic writes: the final name holds the old result or the complete new one."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
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


# -- leftovers of killed writers -------------------------------------------------
def test_only_leftovers_of_dead_processes_of_this_host_are_removed(
    tmp_path: Path, dead_pid: int, leftover
) -> None:
    dead = leftover(tmp_path, "out.bin", dead_pid)
    legacy = tmp_path / f".out.bin.tmp-{dead_pid}-0123abcd"  # no host: this one
    legacy.mkdir()
    alive = leftover(tmp_path, "out.bin", os.getpid())
    elsewhere = leftover(tmp_path, "out.bin", dead_pid, host="ffffffff")
    if atomic.host_tag() == "ffffffff":
        pytest.skip("this host's tag is the made-up one")
    other = leftover(tmp_path, "other.bin", dead_pid)
    mine = tmp_path / ".hidden-by-the-user"
    mine.write_text("x")

    atomic_write_bytes(tmp_path / "out.bin", b"new")  # clears its own name only
    assert not dead.exists() and not legacy.exists()
    assert alive.exists() and elsewhere.exists() and other.exists()
    assert atomic.remove_stale_temps(tmp_path) == [other]
    assert mine.exists() and alive.exists()


def test_a_directory_moved_aside_by_a_dead_writer_is_put_back(
    tmp_path: Path, dead_pid: int, leftover
) -> None:
    aside = tmp_path / f".store.zarr.old-{dead_pid}-{atomic.host_tag()}-0123abcd"
    aside.mkdir()  # moved aside, then killed before the new one took its name
    (aside / "chunk").write_text("old")
    new = leftover(tmp_path, "store.zarr", dead_pid)
    assert sorted(atomic.remove_stale_temps(tmp_path)) == sorted([aside, new])
    assert os.listdir(tmp_path) == ["store.zarr"]
    assert (tmp_path / "store.zarr" / "chunk").read_text() == "old"


#: A writer that stops for good in the rename that would publish its result.
STALLED_WRITER = """
import os, sys, time
from pathlib import Path
from napari_xrm_al.io.atomic import atomic_path, atomic_write_bytes

real_replace = os.replace

def stalled_replace(src, dst):
    if ".tmp-" in Path(src).name:  # the new result, about to take the final name
        print("renaming", flush=True)
        time.sleep(600)
    real_replace(src, dst)

os.replace = stalled_replace
final = Path(sys.argv[1])
if final.is_dir():
    with atomic_path(final, is_dir=True) as tmp:
        tmp.mkdir()
        (tmp / "chunk").write_bytes(b"new")
else:
    atomic_write_bytes(final, b"new")
print("done", flush=True)
"""


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_a_writer_killed_before_its_rename_leaves_the_old_result(
    tmp_path: Path, kind: str
) -> None:
    final = tmp_path / "out"
    if kind == "file":
        final.write_bytes(b"old")
    else:
        final.mkdir()
        (final / "chunk").write_bytes(b"old")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    writer = subprocess.Popen(
        [sys.executable, "-c", STALLED_WRITER, str(final)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert writer.stdout.readline().strip() == "renaming"  # not written in place
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=60)
    left = [p.name for p in tmp_path.iterdir() if p.name != "out"]
    assert any(name.startswith(f".out.tmp-{writer.pid}-") for name in left)

    atomic.remove_stale_temps(tmp_path)  # as the next run does
    assert os.listdir(tmp_path) == ["out"]
    old = final if kind == "file" else final / "chunk"
    assert old.read_bytes() == b"old"

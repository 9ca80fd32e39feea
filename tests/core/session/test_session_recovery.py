"""Sessions survive damage and refuse a second process: backups, migrations,
damaged models and annotation chunks, and the folder lock."""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest

from napari_xrm_al.classes import ClassTable
from napari_xrm_al.core.session import schema as session_schema
from napari_xrm_al.core.session.lock import LOCK_FILE, SessionLock, SessionLockedError
from napari_xrm_al.core.session.schema import SCHEMA_VERSION
from napari_xrm_al.core.session.session import (
    BACKUP_FILE,
    SESSION_FILE,
    CycleRecord,
    ImageRef,
    Session,
)
from napari_xrm_al.core.slice_refs import SliceRef
from napari_xrm_al.errors import InputError

IMAGE = ImageRef(
    path="/data/scan.tif", shape=(10, 12, 14), dtype="uint16", fingerprint="f"
)


@pytest.fixture
def session(tmp_path) -> Session:
    s = Session.create(tmp_path / "s.xrmal", IMAGE, ClassTable.hbm())
    yield s
    s.close()


def paint(value: int) -> np.ndarray:
    out = np.zeros(IMAGE.shape[1:], np.uint8)
    out[2:6, 3:9] = value
    return out


# -- session.json and its backup ---------------------------------------------
def test_damaged_session_file_reopens_from_the_backup(session) -> None:
    session.annotations.write_slice(2, paint(1))
    session.mark_done(2)
    session.annotations.write_slice(5, paint(3))
    session.mark_done(5)
    path = session.folder / SESSION_FILE
    path.write_bytes(path.read_bytes()[:40])  # torn by a disk or a copy

    again = Session.open(session.folder)
    assert again.done == [SliceRef(0, 2)]  # the state before the last change
    assert "damaged" in again.warnings[0] and "backup" in again.warnings[0]
    assert json.loads(path.read_text())["done"] == [["z", 2]]  # repaired on disk
    np.testing.assert_array_equal(
        again.annotations.read_slice(5), paint(3)
    )  # strokes kept


def test_only_a_backup_left_still_opens(session) -> None:
    session.annotations.write_slice(1, paint(2))
    session.mark_done(1)
    (session.folder / SESSION_FILE).unlink()
    assert Session.exists(session.folder)
    again = Session.open(session.folder)
    assert again.image == IMAGE and (session.folder / SESSION_FILE).is_file()
    with pytest.raises(InputError, match="already holds a session"):
        Session.create(session.folder, IMAGE, ClassTable.hbm())


def test_session_file_and_backup_both_damaged(session) -> None:
    session.annotations.write_slice(0, paint(1))
    session.mark_done(0)
    (session.folder / SESSION_FILE).write_text("{broken")
    (session.folder / BACKUP_FILE).write_text("")
    with pytest.raises(InputError, match="session.json: cannot be read"):
        Session.open(session.folder)


def test_a_newer_session_file_is_refused_not_replaced_by_the_backup(session) -> None:
    session.annotations.write_slice(0, paint(1))
    session.mark_done(0)
    path = session.folder / SESSION_FILE
    data = json.loads(path.read_text())
    data["schema_version"] = SCHEMA_VERSION + 1
    path.write_text(json.dumps(data))
    assert (session.folder / BACKUP_FILE).is_file()
    with pytest.raises(InputError, match="newer napari-xrm-al"):
        Session.open(session.folder)
    assert json.loads(path.read_text())["schema_version"] == SCHEMA_VERSION + 1


@pytest.mark.parametrize("version", [0, True, "1", None])
def test_schema_version_must_be_a_positive_integer(session, version) -> None:
    path = session.folder / SESSION_FILE
    data = json.loads(path.read_text())
    data["schema_version"] = version
    path.write_text(json.dumps(data))
    (session.folder / BACKUP_FILE).unlink(missing_ok=True)
    with pytest.raises(InputError, match="not a napari-xrm-al session file"):
        Session.open(session.folder)


def test_an_older_schema_is_migrated_step_by_step(session, monkeypatch) -> None:
    """The migration table in action, with two pretend schemas after the current
    one, the first of which renamed a field."""

    def one_to_two(data):
        data["slice_axis"] = data.pop("axis")
        return data

    def two_to_three(data):
        data["axis"] = data.pop("slice_axis")
        return data

    old = json.loads((session.folder / SESSION_FILE).read_text())
    now = SCHEMA_VERSION
    monkeypatch.setattr(session_schema, "SCHEMA_VERSION", now + 2)
    steps = {**session_schema.MIGRATIONS, now: one_to_two, now + 1: two_to_three}
    monkeypatch.setattr(session_schema, "MIGRATIONS", steps)
    assert old["schema_version"] == now
    again = Session.open(session.folder)
    assert again.axis == "z"
    again.mark_done(4)
    assert (
        json.loads((session.folder / SESSION_FILE).read_text())["schema_version"]
        == now + 2
    )


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        (
            "done",
            [["z", -5], ["z", 3], ["y", 12], ["x", 13]],
            "done slices [['z', -5], ['y', 12]] that are not",
        ),
        ("done", [["z", 1.5]], "done slices [['z', 1.5]] that are not"),
        ("done", [3], "done slices [3] that are not [axis, index] pairs"),
        ("done", [["w", 3]], "done slices [['w', 3]] that are not"),
        ("done", "1,2", "not a list"),
        ("axis", "w", "slice axis 'w'"),
        ("axis", "zy", "slice axis 'zy'"),
        ("image", {"path": "a", "dtype": "u1", "fingerprint": "f"}, "image shape"),
    ],
)
def test_fields_the_session_cannot_use_reopen_from_the_backup(
    session, field, value, words
) -> None:
    session.mark_done(2)
    session.mark_done(5)
    path = session.folder / SESSION_FILE
    data = json.loads(path.read_text())
    data[field] = value
    path.write_text(json.dumps(data))

    again = Session.open(session.folder)
    assert again.done == [SliceRef(0, 2)] and again.axis == "z"
    assert words in again.warnings[0] and "backup" in again.warnings[0]
    again.close()
    path.write_text(json.dumps(data))
    (session.folder / BACKUP_FILE).unlink()
    with pytest.raises(InputError, match=f"session.json: .*{re.escape(words)}"):
        Session.open(session.folder)


def test_a_deeply_nested_session_file_reopens_from_the_backup(session) -> None:
    session.mark_done(4)
    session.mark_done(6)
    (session.folder / SESSION_FILE).write_text("[" * 100_000 + "]" * 100_000)
    again = Session.open(session.folder)
    assert again.done == [SliceRef(0, 4)]
    assert "nested too deeply" in again.warnings[0]


def test_opening_clears_what_killed_writers_left_and_nothing_else(
    session, dead_pid, leftover
) -> None:
    folder = session.folder
    (folder / "cache").mkdir()
    dead = [
        leftover(folder, BACKUP_FILE, dead_pid),  # killed while painting
        leftover(folder / "models", "cycle-002.pt", dead_pid),
        leftover(folder / "cache", "summary-ab.npz", dead_pid),
    ]
    (stalled_prediction := folder / f".prediction.zarr.tmp-{dead_pid}-0123abcd").mkdir()
    (stalled_prediction / "c").mkdir()  # a zarr store cut short, older naming
    alive = leftover(folder, SESSION_FILE, os.getppid())  # another writer, alive
    session.close()

    Session.open(folder).close()
    assert not any(path.exists() for path in [*dead, stalled_prediction])
    assert alive.exists()


# -- models -------------------------------------------------------------------
def add_cycles(session: Session, tiny_model_file, n: int) -> list:
    paths = []
    for cycle in range(1, n + 1):
        path = tiny_model_file(
            session.paths.model_path(f"cycle-{cycle:03d}.pt"), seed=cycle
        )
        session.add_cycle(
            CycleRecord(cycle, "random", [1], model=session.paths.relative(path))
        )
        paths.append(path)
    return paths


def test_damaged_latest_model_falls_back_to_the_previous_cycle(
    session, tiny_model_file
) -> None:
    first, second = add_cycles(session, tiny_model_file, 2)
    assert session.latest_model == second and session.warnings == []
    second.write_bytes(second.read_bytes()[:1000])

    again = Session.open(session.folder)
    assert again.latest_model == first
    [message] = again.warnings
    assert "cycle 2" in message and "cycle-002.pt" in message
    assert "cycle 1" in message and "instead" in message
    first.unlink()
    assert again.latest_model is None
    assert "train again" in again.warnings[-1]


# -- annotation chunks ------------------------------------------------------------
def test_a_damaged_slice_chunk_loses_only_that_slice(session) -> None:
    session.annotations.write_slice(3, paint(1))
    session.annotations.write_slice(7, paint(2))
    session.mark_done(3)
    session.mark_done(7)
    chunk = session.annotations.chunk_path(7)
    assert chunk.is_file()
    chunk.write_bytes(chunk.read_bytes()[:5])

    again = Session.open(session.folder)
    with pytest.raises(InputError, match="slice z:7 of the annotations but is damaged"):
        again.annotations.read_slice(7)
    volume = again.annotations.read_all()
    np.testing.assert_array_equal(volume[3], paint(1))
    assert not volume[7].any()
    assert again.done == [SliceRef(0, 3)]
    assert "slice 7 is now empty" in again.warnings[-1]
    assert len(list((session.folder / "damaged").iterdir())) == 1
    assert not again.annotations.read_slice(7).any()  # the store reads cleanly again

    again.annotations.chunk_path(3).write_bytes(b"garbage")  # one slice at a time, too
    assert not again.annotations.load_slice(3).any() and again.done == []
    assert len(list((session.folder / "damaged").iterdir())) == 2


def test_leftovers_of_an_interrupted_chunk_write_are_removed(session) -> None:
    session.annotations.write_slice(1, paint(1))
    partial = session.annotations.chunk_path(1).with_suffix(".abc.partial")
    partial.write_bytes(b"half")
    Session.open(session.folder)
    assert not partial.exists()


def test_damaged_annotation_metadata_is_one_clear_error(session) -> None:
    (session.folder / "annotations.zarr" / "zarr.json").write_text("{")
    with pytest.raises(InputError, match="cannot be opened as the annotation volume"):
        Session.open(session.folder).annotations.read_slice(0)


# -- the folder lock ----------------------------------------------------------------
def write_lock(folder, pid: int, host: str | None = None) -> None:
    owner = {"pid": pid, "host": host or socket.gethostname(), "since": "earlier"}
    (folder / LOCK_FILE).write_text(json.dumps(owner))


def test_a_live_process_holding_the_lock_is_refused(tmp_path) -> None:
    folder = tmp_path / "x.xrmal"
    Session.create(folder, IMAGE, ClassTable.hbm()).close()
    assert not (folder / LOCK_FILE).exists()
    write_lock(folder, os.getppid())  # alive: it started us
    with pytest.raises(SessionLockedError, match=rf"pid {os.getppid()}"):
        Session.open(folder)
    write_lock(folder, 4242, host="elsewhere")  # cannot be checked: refused
    with pytest.raises(SessionLockedError, match="on elsewhere"):
        Session.open(folder)


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path) -> None:
    folder = tmp_path / "x.xrmal"
    Session.create(folder, IMAGE, ClassTable.hbm()).close()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    write_lock(folder, int(dead.stdout))
    s = Session.open(folder)
    assert json.loads((folder / LOCK_FILE).read_text())["pid"] == os.getpid()
    s.close()
    assert not (folder / LOCK_FILE).exists()


def test_a_half_written_lock_is_stale_unless_its_writer_holds_it(tmp_path) -> None:
    folder = tmp_path / "x.xrmal"
    Session.create(folder, IMAGE, ClassTable.hbm()).close()
    path = folder / LOCK_FILE
    path.write_text("")
    with open(path) as held:  # a writer that has locked but not yet written
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(SessionLockedError, match=r"pid \?"):
            SessionLock(folder)
    SessionLock(folder).release()  # no one holds it: taken over
    assert not path.exists()


def test_one_process_shares_its_lock_until_the_last_release(tmp_path) -> None:
    folder = tmp_path / "x.xrmal"
    a = Session.create(folder, IMAGE, ClassTable.hbm())
    b = Session.open(folder)
    a.close()
    assert (folder / LOCK_FILE).exists()
    b.close()
    b.close()  # twice is harmless
    assert not (folder / LOCK_FILE).exists()


def test_a_second_process_cannot_open_the_session(session) -> None:
    code = (
        "import sys\n"
        "from napari_xrm_al.core.session.session import Session\n"
        "from napari_xrm_al.errors import XrmError\n"
        "try:\n"
        f"    Session.open({str(session.folder)!r})\n"
        "except XrmError as exc:\n"
        "    print(exc); sys.exit(3)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 3, result.stderr
    assert "open in another napari-xrm-al process" in result.stdout
    assert f"pid {os.getpid()}" in result.stdout
    assert (session.folder / LOCK_FILE).exists()  # still ours

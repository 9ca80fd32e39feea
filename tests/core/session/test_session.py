"""The active-learning session folder: create, edit, reopen, refuse what is not ours."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_xrm_al.classes import ClassTable
from napari_xrm_al.core.session.schema import SCHEMA_VERSION
from napari_xrm_al.core.session.session import (
    CycleRecord,
    ImageRef,
    Session,
    default_session_dir,
)
from napari_xrm_al.core.slice_refs import SliceRef
from napari_xrm_al.errors import InputError, XrmError

IMAGE = ImageRef(
    path="/data/scan.tif", shape=(12, 16, 20), dtype="uint16", fingerprint="abc"
)


@pytest.fixture
def session(tmp_path) -> Session:
    return Session.create(
        tmp_path / "scan.tif.xrmal", IMAGE, ClassTable.hbm(), axis="z"
    )


def test_default_folder_sits_beside_the_scan(tmp_path) -> None:
    assert default_session_dir(tmp_path / "scan.tif") == tmp_path / "scan.tif.xrmal"


def test_reopens_exactly_where_the_user_stopped(
    session: Session, tmp_path, tiny_model_file
) -> None:
    paint = np.zeros((16, 20), np.uint8)
    paint[2:5, 3:9] = 2
    paint[10, 10] = 4
    session.annotations.write_slice(7, paint)
    session.mark_done(7)
    session.mark_done(3)
    model = session.paths.model_path("cycle-001.pt")
    tiny_model_file(model)
    session.add_cycle(
        CycleRecord(
            cycle=1,
            strategy="rareness",
            labelled=[3, 7],
            picks=[{"slice": 9, "score": 0.4, "rank": 1}],
            model=session.paths.relative(model),
            metrics={"miou": 0.5},
        )
    )

    again = Session.open(session.folder)
    assert again.done == [SliceRef(0, 3), SliceRef(0, 7)]
    assert again.classes == session.classes
    assert again.image == IMAGE
    np.testing.assert_array_equal(again.annotations.read_slice(7), paint)
    assert not again.annotations.read_slice(3).any()
    assert again.cycles[0].picks[0]["slice"] == 9
    assert again.latest_model == model
    assert again.annotations.annotated_slices() == [7]
    # Only done slices count towards the labelled class frequencies.
    assert again.labelled_counts().tolist() == [0, 18, 0, 1]


def test_other_axis_stores_one_chunk_per_slice(tmp_path) -> None:
    s = Session.create(tmp_path / "s", IMAGE, ClassTable.hbm(), axis="y")
    assert s.annotations.array.chunks == (12, 1, 20)
    s.annotations.write_slice(4, np.full((12, 20), 1, np.uint8))
    assert s.annotations.array[:, 4].all()
    assert not s.annotations.array[:, 5].any()


def test_values_outside_the_class_table_are_refused(session: Session) -> None:
    with pytest.raises(XrmError, match=r"1\.\.4"):
        session.annotations.write_slice(0, np.full((16, 20), 9, np.uint8))
    with pytest.raises(XrmError, match="outside"):
        session.mark_done(99)


def test_refuses_to_overwrite_an_existing_session(session: Session) -> None:
    with pytest.raises(InputError, match="already holds a session"):
        Session.create(session.folder, IMAGE, ClassTable.hbm())


def test_session_from_a_newer_version_is_refused(session: Session) -> None:
    path = session.folder / "session.json"
    data = json.loads(path.read_text())
    data["schema_version"] = SCHEMA_VERSION + 1
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="newer napari-xrm-al"):
        Session.open(session.folder)


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "cannot be read"), ('{"hello": 1}', "not a napari-xrm-al session")],
)
def test_corrupt_session_file_gives_a_clear_error(session, content, message) -> None:
    (session.folder / "session.json").write_text(content)
    with pytest.raises(InputError, match=message):
        Session.open(session.folder)


def test_folder_that_is_no_session(tmp_path) -> None:
    with pytest.raises(InputError, match="not a napari-xrm-al session folder"):
        Session.open(tmp_path)


def test_image_checks(session: Session) -> None:
    assert session.check_image((12, 16, 20), "abc") == []
    assert "changed on disk" in session.check_image((12, 16, 20), "zzz")[0]
    with pytest.raises(InputError, match="has shape"):
        session.check_image((12, 16, 21), "abc")


def test_session_file_is_replaced_atomically(session: Session) -> None:
    session.mark_done(1)
    leftovers = [p.name for p in session.folder.iterdir() if p.name.startswith(".")]
    assert leftovers == []
    assert json.loads((session.folder / "session.json").read_text())["done"] == [
        ["z", 1]
    ]

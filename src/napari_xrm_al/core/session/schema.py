"""The session file's schema: its records, version and migrations.

``session.json`` carries ``schema_version``. A change of the format bumps
:data:`SCHEMA_VERSION` and adds the step from the previous version to
:data:`MIGRATIONS`, so every older project folder still opens (and is saved
in the new schema); a file from a newer plugin is refused, never rewritten.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from napari_xrm_al import __version__
from napari_xrm_al.errors import InputError

SCHEMA_VERSION = 3
#: The slice axes a session may use, in array order.
AXES = ("z", "y", "x")


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ImageRef:
    """Which scan a session belongs to."""

    path: str
    shape: tuple[int, int, int]
    dtype: str
    fingerprint: str


@dataclass
class CycleRecord:
    """One active-learning cycle: what was picked, trained and measured.

    ``labelled`` holds ``[axis, index]`` pairs (``['z', 40]``), each pick its
    ``axis`` and ``slice``; ``seed`` is the training seed (projects from before
    it was recorded trained with 0).
    """

    cycle: int
    strategy: str
    labelled: list[Any]
    picks: list[dict[str, Any]] = field(default_factory=list)
    model: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    created: str = field(default_factory=now)
    seed: int = 0


@dataclass
class SuggestionRecord:
    """The latest slices suggested for painting, kept until a cycle trains.

    ``picks`` are stored as in :class:`CycleRecord` (``axis``, ``slice``,
    ``score``, ``rank`` and ``reason`` where a split batch gave one); ``model``
    is the checkpoint that ranked them (relative to the project), ``plan`` the
    sentence that explains a split batch.
    """

    strategy: str
    picks: list[dict[str, Any]]
    model: str | None = None
    plan: str | None = None
    created: str = field(default_factory=now)


#: Schema migrations: ``MIGRATIONS[n]`` turns a schema-``n`` document into a
#: schema ``n + 1`` one. A change of the session format bumps
#: :data:`SCHEMA_VERSION` and adds the step from the previous version here, so
#: every older folder still opens (and is saved in the new schema).
def _slices_with_axis(data: dict[str, Any]) -> dict[str, Any]:
    """Schema 1 → 2: slices along the session's one axis become ``[axis, index]``
    pairs (done, each cycle's labelled slices) and each pick names its axis.

    Values of the wrong type are left as they are, for :func:`check_slices` to
    name them.
    """
    axis = data.get("axis")

    def pairs(items: Any) -> Any:
        return [[axis, i] for i in items] if isinstance(items, list) else items

    data["done"] = pairs(data.get("done", []))
    cycles = data.get("cycles")
    if isinstance(cycles, list):
        data["cycles"] = [_cycle_with_axis(c, axis, pairs) for c in cycles]
    return data


def _cycle_with_axis(cycle: Any, axis: Any, pairs: Callable[[Any], Any]) -> Any:
    if not isinstance(cycle, dict):
        return cycle
    picks = cycle.get("picks")
    if isinstance(picks, list):
        picks = [{"axis": axis, **p} if isinstance(p, dict) else p for p in picks]
    return {**cycle, "labelled": pairs(cycle.get("labelled")), "picks": picks}


def _with_suggestion(data: dict[str, Any]) -> dict[str, Any]:
    """Schema 2 → 3: the session may hold the latest suggestion (none yet)."""
    return {**data, "suggestion": None}


MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {
    1: _slices_with_axis,
    2: _with_suggestion,
}


def migrate(data: Any, path: Path) -> dict[str, Any]:
    """Bring an older ``session.json`` up to :data:`SCHEMA_VERSION`."""
    version = data.get("schema_version") if isinstance(data, dict) else None
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InputError(
            path, "is not a napari-xrm-al session file (no schema_version)"
        )
    if version > SCHEMA_VERSION:
        raise NewerSessionError(
            path,
            f"was written by a newer napari-xrm-al (session schema {version}, this "
            f"version {__version__} reads up to {SCHEMA_VERSION}); update the plugin",
        )
    while version < SCHEMA_VERSION:
        data = MIGRATIONS[version](dict(data))
        version += 1
        data["schema_version"] = version
    return data


def read_document(path: Path) -> tuple[dict[str, Any], str]:
    """The migrated and checked content of a session file, and its text."""
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(path, f"cannot be read as a session file ({exc})") from None
    except RecursionError:
        raise InputError(
            path, "cannot be read as a session file (nested too deeply)"
        ) from None
    data = migrate(data, path)
    check_slices(data, path)
    return data, text


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_slices(data: dict[str, Any], path: Path) -> None:
    """Check the image shape, the slice axis and the done slices against each other.

    The one place where a loaded document's slices are checked, so that a value
    the rest of the code cannot use is found on loading, not when it is used.

    Raises
    ------
    InputError
        Naming the first field that is out of place.
    """
    image = data.get("image")
    shape = image.get("shape") if isinstance(image, dict) else None
    if not (
        isinstance(shape, list)
        and len(shape) == 3
        and all(_is_int(n) and n > 0 for n in shape)
    ):
        raise InputError(
            path, f"has an image shape {shape!r}, not three positive integers"
        )
    axis = data.get("axis")
    if axis not in AXES:
        raise InputError(path, f"has the slice axis {axis!r}, not one of z, y, x")
    done = data.get("done", [])
    if not isinstance(done, list):
        raise InputError(path, f"has done slices {done!r}, not a list")
    wrong = [p for p in done if not _is_slice_pair(p, shape)]
    if wrong:
        raise InputError(
            path,
            f"has done slices {wrong[:5]!r} that are not [axis, index] pairs of "
            f"slices inside the volume's shape {shape}",
        )


def _is_slice_pair(item: Any, shape: list[int]) -> bool:
    """Whether ``item`` is ``[axis, index]`` with ``index`` inside ``shape`` along ``axis``."""
    if not (isinstance(item, list) and len(item) == 2 and item[0] in AXES):
        return False
    index = item[1]
    return _is_int(index) and 0 <= index < shape[AXES.index(item[0])]


class NewerSessionError(InputError):
    """A session written by a newer napari-xrm-al: never touched, never replaced."""

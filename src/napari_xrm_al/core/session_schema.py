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

SCHEMA_VERSION = 1


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
    """One active-learning cycle: what was picked, trained and measured."""

    cycle: int
    strategy: str
    labelled: list[int]
    picks: list[dict[str, Any]] = field(default_factory=list)
    model: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    created: str = field(default_factory=now)


#: Schema migrations: ``MIGRATIONS[n]`` turns a schema-``n`` document into a
#: schema ``n + 1`` one. A change of the session format bumps
#: :data:`SCHEMA_VERSION` and adds the step from the previous version here, so
#: every older folder still opens (and is saved in the new schema).
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


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
    """The migrated content of a session file and its text."""
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(path, f"cannot be read as a session file ({exc})") from None
    return migrate(data, path), text


class NewerSessionError(InputError):
    """A session written by a newer napari-xrm-al: never touched, never replaced."""

"""The class table: names, colours and which classes are rare defects.

Two id conventions exist and this module is the one place that converts:

* **dense** ids ``0..C-1``: ground truth as the sample and ``../shared/data``
  store it (every voxel is a class);
* **annotation** ids ``1..C``: annotations, predictions and exported masks,
  where ``0`` means *not annotated* (ignored by the loss, transparent in napari).

A label volume whose ids could be either
(:func:`napari_xrm_al.io.label_ids.ambiguous_ids`) must say which:
masks do (annotation ids), a ``classes.json`` beside the volume may
(:data:`LABEL_IDS_KEY`), else the user does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_xrm_al.errors import XrmError

#: Colours given to classes that have none, in order (colour-blind friendly).
PALETTE = (
    "#4d4d4d",
    "#e69f00",
    "#56b4e9",
    "#d62728",
    "#009e73",
    "#f0e442",
    "#0072b2",
    "#cc79a7",
)

#: The file beside a label volume that holds its class table (``to_dict`` form).
CLASSES_FILE = "classes.json"
#: Key of ``classes.json`` that names the volume's ids: ``"dense"`` or ``"annotation"``.
LABEL_IDS_KEY = "label_ids"

HBM_CLASSES = ("background", "copper", "solder", "void")
HBM_COLOURS = ("#4d4d4d", "#e69f00", "#56b4e9", "#d62728")


def _check_colour(colour: str) -> str:
    text = colour.strip().lower()
    if not (len(text) == 7 and text[0] == "#"):
        raise XrmError(f"Colour {colour!r} is not of the form '#rrggbb'.")
    try:
        int(text[1:], 16)
    except ValueError:
        raise XrmError(f"Colour {colour!r} is not of the form '#rrggbb'.") from None
    return text


@dataclass(frozen=True)
class ClassTable:
    """The classes of one segmentation task.

    Parameters
    ----------
    names
        Class names in dense-id order (dense id ``i`` is ``names[i]``,
        annotation id ``i + 1``).
    colours
        One ``'#rrggbb'`` colour per class; defaults to :data:`PALETTE`.
    rare
        Names of the rare (defect) classes; defaults to none.
    """

    names: tuple[str, ...]
    colours: tuple[str, ...] = field(default=())
    rare: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        names = tuple(str(n).strip() for n in self.names)
        if len(names) < 2:
            raise XrmError(
                f"A class table needs at least two classes, got {list(names)}."
            )
        if any(not n for n in names):
            raise XrmError(f"Class names must not be empty: {list(names)}.")
        if len(set(names)) != len(names):
            raise XrmError(f"Class names must be unique: {list(names)}.")
        colours = tuple(self.colours) or tuple(
            PALETTE[i % len(PALETTE)] for i in range(len(names))
        )
        if len(colours) != len(names):
            raise XrmError(
                f"{len(colours)} colours were given for {len(names)} classes {list(names)}."
            )
        colours = tuple(_check_colour(c) for c in colours)
        rare = tuple(self.rare)
        unknown = [r for r in rare if r not in names]
        if unknown:
            raise XrmError(
                f"Rare class {unknown[0]!r} is not one of the classes {list(names)}."
            )
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "colours", colours)
        object.__setattr__(self, "rare", rare)

    # -- construction -----------------------------------------------------
    @classmethod
    def hbm(cls) -> ClassTable:
        """The default table for HBM micro-bump scans (void is rare)."""
        return cls(HBM_CLASSES, HBM_COLOURS, rare=("void",))

    @classmethod
    def parse(cls, text: str, rare: Iterable[str] | None = None) -> ClassTable:
        """Build a table from ``"background,copper,solder,void"``.

        Known HBM names keep their usual colours.
        """
        names = tuple(n.strip() for n in text.split(",") if n.strip())
        hbm = dict(zip(HBM_CLASSES, HBM_COLOURS, strict=True))
        colours = tuple(
            hbm.get(n, PALETTE[i % len(PALETTE)]) for i, n in enumerate(names)
        )
        return cls(names, colours, tuple(rare or ()))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassTable:
        """Inverse of :meth:`to_dict`; raises :class:`XrmError` on a malformed table."""
        try:
            entries = data["classes"]
            names = tuple(e["name"] for e in entries)
            colours = tuple(e["colour"] for e in entries)
            rare = tuple(e["name"] for e in entries if e.get("rare", False))
        except (KeyError, TypeError) as exc:
            raise XrmError(
                f"Malformed class table ({exc!r} missing or wrong)."
            ) from None
        return cls(names, colours, rare)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form, stored in checkpoints, sessions and masks."""
        return {
            "classes": [
                {
                    "name": n,
                    "colour": c,
                    "dense_id": i,
                    "annotation_id": i + 1,
                    "rare": n in self.rare,
                }
                for i, (n, c) in enumerate(zip(self.names, self.colours, strict=True))
            ]
        }

    # -- queries ----------------------------------------------------------
    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        """Dense id of class ``name``."""
        try:
            return self.names.index(name)
        except ValueError:
            raise XrmError(
                f"Class {name!r} is not one of the classes {list(self.names)}."
            ) from None

    @property
    def rare_ids(self) -> tuple[int, ...]:
        """Dense ids of the rare classes."""
        return tuple(self.index(r) for r in self.rare)

    def with_rare(self, rare: Sequence[str]) -> ClassTable:
        """A copy with another set of rare classes."""
        return ClassTable(self.names, self.colours, tuple(rare))

    def napari_colormap(self) -> dict[int | None, str]:
        """Annotation id → colour, for a napari ``Labels`` layer (0 transparent)."""
        cmap: dict[int | None, str] = {0: "transparent", None: "#000000"}
        cmap.update({i + 1: c for i, c in enumerate(self.colours)})
        return cmap

    def matches(self, other: ClassTable) -> bool:
        """Whether two tables have the same classes in the same order."""
        return self.names == other.names


def dense_to_annotation(labels: np.ndarray) -> np.ndarray:
    """Dense ids ``0..C-1`` → annotation ids ``1..C`` (as ``uint8`` when they fit)."""
    out_dtype = np.uint8 if labels.size == 0 or int(labels.max()) < 255 else np.uint16
    return labels.astype(out_dtype) + 1


def annotation_to_dense(labels: np.ndarray) -> np.ndarray:
    """Annotation ids ``1..C`` → dense ids ``0..C-1``; unannotated 0 becomes -1."""
    return labels.astype(np.int16) - 1

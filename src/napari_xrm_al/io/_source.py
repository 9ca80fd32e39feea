"""What a format opener found, before its axes are resolved to ``(z, y, x)``.

The TIFF, zarr and ZEISS Xradia openers fill a :class:`RawVolume`;
:mod:`.volume_axes` then picks the channel and checks the dimensions and dtype,
and :mod:`.volumes` builds the public :class:`~napari_xrm_al.io.volumes.Volume`.
Shared helpers for calibration and for turning library errors into
:class:`~napari_xrm_al.errors.InputError` live here too.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from napari_xrm_al.errors import InputError

#: Unit spellings met in ImageJ, OME and NGFF metadata -> the symbol we show.
_UNIT_SYMBOLS = {
    "nm": "nm",
    "nanometer": "nm",
    "nanometre": "nm",
    "um": "µm",
    "µm": "µm",
    "μm": "µm",
    "\\u00b5m": "µm",
    "micron": "µm",
    "microns": "µm",
    "micrometer": "µm",
    "micrometre": "µm",
    "mm": "mm",
    "millimeter": "mm",
    "millimetre": "mm",
    "cm": "cm",
    "centimeter": "cm",
    "m": "m",
    "meter": "m",
}
#: Units that mean "not calibrated".
_NO_UNIT = {"", "pixel", "pixels", "px", "none"}


@dataclass
class RawVolume:
    """An opened array before axis resolution.

    Attributes
    ----------
    levels
        N-D array-likes, full resolution first (lazy: memmap or zarr).
    axes
        One upper-case letter per dimension: ``Z``, ``Y``, ``X``; ``C`` or
        ``S`` for channels/samples; ``T`` for time; anything else (``Q``,
        ``I``) is an unnamed stack axis.
    fmt
        ``'tiff'``, ``'tiff-folder'``, ``'zarr'``, ``'ome-zarr'``, ``'txm'`` or
        ``'txrm'``.
    voxel_size, unit
        Calibration ``(z, y, x)`` when the metadata gives one.
    notes
        Things to tell the user once.
    rgb
        Whether the channel axis holds RGB(A) samples.
    instrument
        Acquisition metadata the file stores (label -> text, e.g.
        ``'voltage': '80 kV'``), for display.
    """

    levels: list[Any]
    axes: str
    fmt: str
    voxel_size: tuple[float, float, float] | None = None
    unit: str | None = None
    notes: list[str] = field(default_factory=list)
    rgb: bool = False
    instrument: dict[str, str] = field(default_factory=dict)


def normalise_unit(unit: Any) -> str | None:
    """A length unit as a short symbol (``'µm'``), or None when uncalibrated."""
    if unit is None:
        return None
    text = str(unit).strip()
    if text.lower() in _NO_UNIT:
        return None
    return _UNIT_SYMBOLS.get(text.lower(), _UNIT_SYMBOLS.get(text, text))


def calibration(
    sizes: Sequence[Any | None], unit: Any, notes: list[str]
) -> tuple[tuple[float, float, float] | None, str | None]:
    """Voxel size ``(z, y, x)`` and unit from possibly incomplete metadata.

    A missing z spacing is taken equal to the x pixel size (XRM voxels are
    isotropic) with a note saying so. Sizes that are all 1 with no unit mean
    "not calibrated" and give None.
    """
    unit = normalise_unit(unit)
    try:
        z, y, x = (None if s is None else float(s) for s in sizes)
    except (TypeError, ValueError):
        return None, None
    if x is None or y is None:
        return None, None
    if unit is None and x == y == 1.0 and z in (None, 1.0):
        return None, None
    if z is None:
        z = x
        notes.append(
            f"The metadata give no slice spacing; it is taken equal to the "
            f"pixel size ({x:g} {unit or 'units'}, isotropic voxels)."
        )
    voxel = (z, y, x)
    if not all(math.isfinite(v) and v > 0 for v in voxel):
        return None, None
    return voxel, unit


def spatial_voxel(
    axes: str, sizes: Sequence[Any], unit: Any, notes: list[str]
) -> tuple[tuple[float, float, float] | None, str | None]:
    """:func:`calibration` from per-axis sizes, picking the Z, Y and X ones."""
    if len(sizes) != len(axes):
        return None, None
    by_axis = dict(zip(axes, sizes, strict=True))
    if "Y" not in by_axis or "X" not in by_axis:
        return None, None
    return calibration((by_axis.get("Z"), by_axis["Y"], by_axis["X"]), unit, notes)


@contextlib.contextmanager
def reading(path: Path, what: str) -> Iterator[None]:
    """Turn errors of the reading libraries into one-sentence input errors.

    Damaged bytes make the decoders fail in many ways (fuzzing found
    ``ZeroDivisionError``, ``zlib.error``, codec errors, ...), so every
    ``Exception`` raised inside the block counts as unreadable input; the
    blocks hold only library calls on the file. ``MemoryError`` is passed on.
    """
    try:
        yield
    except InputError:
        raise
    except PermissionError:
        raise InputError(path, "cannot be read (permission denied)") from None
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 (see the docstring)
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        reason = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
        raise InputError(path, f"could not be read as {what} ({reason})") from None


class LogCapture(logging.Handler):
    """Collects the errors a library logs (tifffile logs rather than raises)."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            self.messages.append(record.getMessage())


@contextlib.contextmanager
def captured_log(name: str) -> Iterator[LogCapture]:
    """Capture (and silence) what logger ``name`` reports inside the block."""
    logger = logging.getLogger(name)
    handler = LogCapture()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate

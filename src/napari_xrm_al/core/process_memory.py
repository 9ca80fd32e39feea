"""Keeping a headless process's resident memory low.

Four levers, all no-ops where they do not apply:

* :func:`trim_heap` gives freed heap memory back to the system (glibc);
* :func:`map_large_allocations` keeps large blocks out of the heap, where
  the tensors of tiled prediction would otherwise fragment it;
* :func:`limit_malloc_arenas` stops glibc from giving every thread its own
  heap arena, whose freed-but-kept buffers add up with zarr's and torch's
  worker threads;
* :func:`import_monai_lean` imports MONAI without the optional packages it
  loads eagerly (pandas, scikit-learn, matplotlib, scikit-image, ...), which
  cost ~165 MB of resident memory that the networks and losses we use never
  touch.

The last two change the whole process, so only the command line calls them;
inside napari other plugins may rely on MONAI's optional features. Tiled
prediction maps large blocks in any process: it only runs when memory is what
limits the work, and trades a little time for it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.abc
import sys
from functools import cache
from importlib.machinery import ModuleSpec
from types import ModuleType

#: Packages MONAI imports when present but our networks and losses never use.
MONAI_OPTIONAL = frozenset(
    {
        "jsonschema",
        "matplotlib",
        "narwhals",
        "pandas",
        "PIL",
        "psutil",
        "requests",
        "rich",
        "scipy",
        "skimage",
        "sklearn",
        "yaml",
    }
)

#: ``mallopt`` parameter numbers of ``M_ARENA_MAX`` and ``M_MMAP_THRESHOLD``
#: (glibc ``malloc.h``).
_M_ARENA_MAX = -8
_M_MMAP_THRESHOLD = -3
#: Blocks from this size up get their own memory map (see
#: :func:`map_large_allocations`).
MAP_THRESHOLD = 16 * 2**20


@cache
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim, libc.mallopt  # noqa: B018 - glibc only
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return None
    return libc


def trim_heap() -> None:
    """Give freed heap memory back to the system (glibc; no-op elsewhere).

    Without it, glibc keeps the freed buffers of earlier batches in fragmented
    arenas and the peak memory of a long prediction creeps up with the volume.
    """
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def limit_malloc_arenas(arenas: int = 1) -> bool:
    """Cap glibc's heap arenas for threads started from now on.

    Returns whether the setting was applied. Costs nothing measurable here
    (one or two busy threads); saves ~80 MB of peak when predicting 1024²
    slices (docs/benchmarks.md).
    """
    libc = _libc()
    return bool(libc is not None and libc.mallopt(_M_ARENA_MAX, int(arenas)) == 1)


def map_large_allocations(threshold: int = MAP_THRESHOLD) -> bool:
    """Serve blocks of ``threshold`` bytes and more from their own memory maps,
    given back to the system when freed (glibc; for the whole process, for good).

    glibc raises its own threshold (up to 32 MiB) each time such a block is
    freed, so the 16–32 MiB tensors of tile-sized forward passes then come from
    the heap, which they fragment: the peak of tiled prediction crept 100–200 MB
    above its limit over the first hundred tiles. Costs ~10 % of the time of
    tiled prediction (fresh maps are page-faulted in). Returns whether the
    setting was applied.
    """
    libc = _libc()
    return bool(
        libc is not None and libc.mallopt(_M_MMAP_THRESHOLD, int(threshold)) == 1
    )


class _Absent(importlib.abc.MetaPathFinder):
    """Makes the named top-level packages look uninstalled."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def find_spec(
        self, fullname: str, path: object, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


def import_monai_lean() -> ModuleType:
    """Import MONAI as if its optional packages were not installed.

    MONAI treats them as optional (``monai.utils.optional_import``), so its
    networks and losses work without them. Packages already imported, and
    every import after this call, are unaffected; a MONAI already imported is
    returned as it is.
    """
    if "monai" in sys.modules:
        return sys.modules["monai"]
    absent = _Absent(MONAI_OPTIONAL - set(sys.modules))
    sys.meta_path.insert(0, absent)
    try:
        import monai
    finally:
        sys.meta_path.remove(absent)
    return monai

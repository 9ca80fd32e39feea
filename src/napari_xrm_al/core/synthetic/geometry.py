"""Geometry of the synthetic HBM sample: which material every voxel holds.

The stack runs along z (axis 0): silicon dies separated by bump layers. A bump
layer is underfill with a grid of micro-bumps in (y, x); each bump is a copper
pad, a solder cap and a copper pillar (or the reverse order), and some solder
caps hold voids. Copper through-silicon vias (TSVs) continue some bumps through
the dies. Every shape is drawn with numpy broadcasting inside its own bounding
box, so a 128 × 256 × 256 volume takes a fraction of a second.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from napari_xrm_al.core.synthetic.params import SampleParams
from napari_xrm_al.errors import XrmError

# Material ids of the geometry volume; several materials share one class.
MOLD, UNDERFILL, SILICON, COPPER, SOLDER, VOID = range(6)
MATERIAL_NAMES = ("mold", "underfill", "silicon", "copper", "solder", "void")
#: Dense class id (background, copper, solder, void) of each material id.
CLASS_OF_MATERIAL = np.array([0, 0, 0, 1, 2, 3], dtype=np.uint8)


@dataclass(frozen=True)
class LayerGeometry:
    """Vertical make-up of the bump layers, the same for every layer of a sample."""

    pad: int
    solder: int
    pillar: int
    pillar_first: bool

    @property
    def height(self) -> int:
        """Die-to-die gap, in voxels."""
        return self.pad + self.solder + self.pillar


def _uniform_int(rng: np.random.Generator, bounds: tuple[float, float]) -> int:
    lo, hi = round(bounds[0]), round(bounds[1])
    return int(rng.integers(lo, hi + 1))


def _grid_centres(size: int, pitch: float) -> np.ndarray:
    """Centres of a centred row of bumps ``pitch`` apart (at least one)."""
    n = max(1, int(size // pitch))
    return (size - 1) / 2 + (np.arange(n) - (n - 1) / 2) * pitch


def _layer_starts(
    params: SampleParams, height: int, rng: np.random.Generator
) -> list[int]:
    """First z slice of each bump layer, the layers centred in the volume."""
    nz = params.shape[0]
    period = height + params.die_thickness
    n = params.n_bump_layers or max(1, nz // period)
    span = n * height + (n - 1) * params.die_thickness
    first = (nz - span) // 2 + int(rng.integers(-3, 4))
    return [first + k * period for k in range(n)]


def _box(centre: float, half: float, size: int) -> slice:
    return slice(
        max(0, int(np.floor(centre - half))), min(size, int(np.ceil(centre + half)) + 1)
    )


def build_materials(params: SampleParams, rng: np.random.Generator) -> np.ndarray:
    """The material volume (``uint8`` material ids, shape ``params.shape``)."""
    nz, ny, nx = params.shape
    layer = LayerGeometry(
        pad=_uniform_int(rng, params.pad_thickness_range),
        solder=_uniform_int(rng, params.solder_thickness_range),
        pillar=_uniform_int(rng, params.pillar_height_range),
        pillar_first=bool(rng.random() < 0.5),
    )
    pitch = min(rng.uniform(*params.pitch_range), ny, nx)
    radius = 0.5 * pitch * rng.uniform(*params.diameter_fraction_range)
    pad_scale = rng.uniform(1.0, 1.15)
    bulge = rng.uniform(0.05, 0.2)
    starts = _layer_starts(params, layer.height, rng)
    void_layers = (
        range(len(starts)) if params.void_layers is None else params.void_layers
    )
    if max(void_layers, default=0) >= len(starts):
        raise XrmError(
            f"void_layers {tuple(void_layers)} names a layer beyond the "
            f"{len(starts)} bump layers of this sample."
        )

    materials = np.full(params.shape, SILICON, dtype=np.uint8)
    if params.n_bump_layers is not None:
        # A stack of known height: mold compound above and below its outer dies.
        lo = max(0, starts[0] - params.die_thickness)
        hi = min(nz, starts[-1] + layer.height + params.die_thickness)
        materials[:lo] = MOLD
        materials[hi:] = MOLD
    for z0 in starts:
        materials[max(0, z0) : max(0, z0 + layer.height)] = UNDERFILL

    cy, cx = np.meshgrid(
        _grid_centres(ny, pitch), _grid_centres(nx, pitch), indexing="ij"
    )
    cy, cx = cy.ravel(), cx.ravel()
    _add_tsvs(materials, cy, cx, radius * rng.uniform(0.2, 0.3), params, rng)
    for k, z0 in enumerate(starts):
        n = cy.size
        jitter = rng.uniform(-1.5, 1.5, size=(2, n))
        radii = radius * rng.uniform(0.95, 1.05, size=n)
        thinner = rng.integers(-1, 1, size=n)  # some caps squeezed a slice thinner
        bulges = bulge * rng.uniform(0.5, 1.5, size=n)
        voided = rng.random(n) < params.void_probability * (k in void_layers)
        for i in range(n):
            profile = _bump_profile(
                layer, int(thinner[i]), radii[i], pad_scale, bulges[i]
            )
            box = _draw_bump(
                materials, z0, profile, cy[i] + jitter[0, i], cx[i] + jitter[1, i]
            )
            if voided[i] and box is not None:
                _add_voids(materials, box, params, rng)
    return materials


def _add_tsvs(
    materials: np.ndarray,
    cy: np.ndarray,
    cx: np.ndarray,
    radius: float,
    params: SampleParams,
    rng: np.random.Generator,
) -> None:
    """Copper vias through the silicon under a fraction of the bump columns."""
    _, ny, nx = materials.shape
    chosen = rng.random(cy.size) < params.tsv_fraction
    yy = np.arange(ny)[:, None]
    xx = np.arange(nx)[None, :]
    columns = np.zeros((ny, nx), dtype=bool)
    for y, x in zip(cy[chosen], cx[chosen], strict=True):
        columns |= (yy - y) ** 2 + (xx - x) ** 2 <= radius**2
    if not columns.any():
        return
    inside = materials[:, columns]
    inside[inside == SILICON] = COPPER
    materials[:, columns] = inside


def _bump_profile(
    layer: LayerGeometry, thinner: int, radius: float, pad_scale: float, bulge: float
) -> tuple[np.ndarray, np.ndarray]:
    """Radius and material of each slice of one bump, bottom to top."""
    solder = max(1, layer.solder + thinner)
    pillar = layer.height - layer.pad - solder
    t = (np.arange(solder) + 0.5) / solder
    solder_radius = radius * (1.0 + bulge * np.sin(np.pi * t))
    parts = [
        (np.full(layer.pad, radius * pad_scale), COPPER),
        (solder_radius, SOLDER),
        (np.full(pillar, radius), COPPER),
    ]
    if layer.pillar_first:
        parts.reverse()
    radii = np.concatenate([r for r, _ in parts])
    mats = np.concatenate([np.full(r.size, m, dtype=np.uint8) for r, m in parts])
    return radii, mats


def _draw_bump(
    materials: np.ndarray,
    z0: int,
    profile: tuple[np.ndarray, np.ndarray],
    y: float,
    x: float,
) -> tuple[slice, slice, slice] | None:
    """Paint one bump; returns its bounding box, or None if it lies outside."""
    radii, mats = profile
    nz, ny, nx = materials.shape
    zs = slice(max(0, z0), min(nz, z0 + radii.size))
    if zs.start >= zs.stop:
        return None
    half = float(radii.max()) + 1
    ys, xs = _box(y, half, ny), _box(x, half, nx)
    r2 = (np.arange(ys.start, ys.stop)[:, None] - y) ** 2 + (
        np.arange(xs.start, xs.stop)[None, :] - x
    ) ** 2
    rad = radii[zs.start - z0 : zs.stop - z0, None, None]
    mat = mats[zs.start - z0 : zs.stop - z0, None, None]
    inside = r2[None] <= rad**2
    box = (zs, ys, xs)
    materials[box] = np.where(inside, mat, materials[box])
    return box


def _add_voids(
    materials: np.ndarray,
    box: tuple[slice, slice, slice],
    params: SampleParams,
    rng: np.random.Generator,
) -> None:
    """Put one to three ellipsoidal voids strictly inside the bump's solder."""
    sub = materials[box]
    # Eroding with the 6-neighbourhood keeps every void voxel's neighbours solder
    # or void; border_value=0 keeps voids off the volume's edge.
    room = ndimage.binary_erosion(sub == SOLDER, border_value=0)
    cells = np.argwhere(room)
    if cells.size == 0:
        return
    zz, yy, xx = np.ogrid[: sub.shape[0], : sub.shape[1], : sub.shape[2]]
    void = np.zeros(sub.shape, dtype=bool)
    for _ in range(int(rng.integers(1, 4))):
        cz, cy, cx = cells[rng.integers(cells.shape[0])]
        rz, ry, rx = rng.uniform(*params.void_radius_range, size=3)
        rz *= rng.uniform(0.6, 1.0)  # caps are thin: voids tend to be flattened
        void |= ((zz - cz) / rz) ** 2 + ((yy - cy) / ry) ** 2 + (
            (xx - cx) / rx
        ) ** 2 <= 1
    sub[void & room] = VOID

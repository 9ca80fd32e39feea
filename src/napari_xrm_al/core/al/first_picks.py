"""First picks: the slices to label before any model is trained.

The pretrained encoder's embeddings of every candidate slice are covered by
k-centre greedy, each step weighted towards slices that hold many structures
(:func:`first_picks`), so the first batch covers the scan rather than one
layer of it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_xrm_al.core.al.batch_picking import DEFAULT_MIN_DISTANCE, Pick, pick_batch


def first_picks(
    index: np.ndarray,
    embedding: np.ndarray,
    k: int,
    *,
    spread: np.ndarray | None = None,
    labelled: Sequence[int] = (),
    min_distance: int = DEFAULT_MIN_DISTANCE,
    seed: int = 0,
) -> tuple[np.ndarray, list[Pick]]:
    """Slices to label before any model is trained: k-centre greedy on
    embeddings, weighted towards slices that hold many structures.

    With ``spread`` (each slice's feature spread, see
    :func:`~napari_xrm_al.core.inference.embedding.embed_slices`) each step
    takes the slice with the highest ``sqrt(spread / max spread) × d / d_max``,
    ``d`` its embedding distance to the nearest labelled or picked slice; the
    first pick, when none is labelled, is the slice of highest spread. Plain
    k-centre far apart slices are often the z slices of different layers, one
    structure each; the spread prefers slices (cross-sections, bump layers)
    that hold several (docs/benchmarks.md, first picks). Without ``spread``:
    plain k-centre from a slice drawn with ``seed`` when none is labelled.
    Picks keep ``min_distance`` along the axis.

    Returns
    -------
    scores
        ``(S,)`` embedding distance of each slice to its nearest labelled slice
        or pick (how unlike the slices already covered it is).
    picks
        The picked slices in order.
    """
    index = np.asarray(index)
    emb = np.asarray(embedding, dtype=np.float64)
    row = {int(s): i for i, s in enumerate(index)}
    taken = [int(s) for s in labelled]
    if spread is not None:
        weight = np.sqrt(np.maximum(np.asarray(spread, np.float64), 0.0))
        weight = weight / weight.max() if weight.max() > 0 else np.ones(len(index))
    else:
        weight = np.ones(len(index))
        if not taken and k > 0 and len(index):
            taken = [int(index[np.random.default_rng(seed).integers(len(index))])]
    rest = pick_batch(
        index,
        weight,
        k - (len(taken) - len(labelled)),
        labelled=taken,
        min_distance=min_distance,
        embedding=emb,
        diversity=1.0,
    )
    chosen = taken[len(labelled) :] + [p.slice for p in rest]

    # Distance of every slice to its nearest labelled or already-picked slice.
    nearest = np.full(len(index), np.inf)

    def cover(s: int) -> None:
        nonlocal nearest
        nearest = np.minimum(nearest, np.linalg.norm(emb - emb[row[s]], axis=1))

    for s in labelled:
        cover(int(s))
    picks = []
    for rank, s in enumerate(chosen, start=1):
        d = nearest[row[s]]
        picks.append(
            Pick(slice=s, score=float(d) if np.isfinite(d) else 0.0, rank=rank)
        )
        cover(s)
    return np.where(np.isfinite(nearest), nearest, 0.0), picks

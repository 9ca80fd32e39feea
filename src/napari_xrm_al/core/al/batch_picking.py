"""Taking a batch of slices from their scores, kept apart along the axis.

A neighbour of a labelled slice teaches the model almost nothing new, so
every picker keeps a minimum distance along the slice axis between picks and
from the slices already labelled. Slices are slice codes
(:func:`~napari_xrm_al.core.slice_refs.slice_codes`): slices of different
axes are far apart, so the distance applies within each axis.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_xrm_al.core.slice_refs import SliceRef, ref_of_code

#: Default minimum distance, in slices, between picks and from labelled slices.
DEFAULT_MIN_DISTANCE = 3


@dataclass(frozen=True)
class Pick:
    """One picked slice (its code) and why (``reason``: what part of a split
    batch took it, e.g. ``'cover'`` or ``'rare'``; empty for a single-score batch)."""

    slice: int
    score: float
    rank: int
    reason: str = ""

    @property
    def ref(self) -> SliceRef:
        """The slice picked, by axis and index."""
        return ref_of_code(self.slice)


def pick_record(pick: Pick) -> dict[str, Any]:
    """``pick`` as stored in a cycle record (``reason`` only when it has one)."""
    ref = pick.ref
    record = {
        "axis": ref.axis_name,
        "slice": ref.index,
        "score": pick.score,
        "rank": pick.rank,
    }
    return {**record, "reason": pick.reason} if pick.reason else record


def pick_of_record(record: dict[str, Any]) -> Pick:
    """The :class:`Pick` that :func:`pick_record` stored."""
    ref = SliceRef.of(record["axis"], int(record["slice"]))
    return Pick(
        ref.code, float(record["score"]), int(record["rank"]), record.get("reason", "")
    )


def pick_batch(
    index: np.ndarray,
    scores: np.ndarray,
    k: int,
    *,
    labelled: Sequence[int] = (),
    min_distance: int = DEFAULT_MIN_DISTANCE,
    embedding: np.ndarray | None = None,
    diversity: float = 0.0,
) -> list[Pick]:
    """Take ``k`` slices with the highest scores, keeping them apart.

    A slice is eligible when it is not labelled and lies at least
    ``min_distance`` slices from every labelled and every picked slice. Without
    ``diversity`` the batch is the one with the highest total score among all
    batches that keep those distances (:func:`best_spaced_batch`): taking the
    single best slice first can waste the room around it, e.g. in a layer of
    rare objects only a few slices thick. With ``embedding`` and
    ``diversity > 0`` the picks are greedy: each step multiplies the scores by
    ``(d / d_max) ** diversity``, where ``d`` is a candidate's embedding
    distance to its nearest labelled-or-picked slice (k-centre greedy when the
    scores are constant). As many picks as the distances allow, at most ``k``,
    are returned, best score first.
    """
    index = np.asarray(index)
    scores = np.asarray(scores, dtype=np.float64)
    eligible = np.ones(len(index), dtype=bool)
    taken = list(labelled)
    gap = max(min_distance, 1)

    def exclude_near(slice_index: int) -> None:
        eligible[np.abs(index - slice_index) < gap] = False

    for s in taken:
        exclude_near(s)

    if embedding is None or diversity <= 0:
        rows = best_spaced_batch(index, scores, eligible, k, gap)
        rows = sorted(rows, key=lambda r: (-scores[r], index[r]))
        return [
            Pick(slice=int(index[r]), score=float(scores[r]), rank=i + 1)
            for i, r in enumerate(rows)
        ]

    emb = np.asarray(embedding, dtype=np.float64)
    nearest = np.full(len(index), np.inf)
    for row in emb[np.isin(index, taken)]:
        nearest = np.minimum(nearest, np.linalg.norm(emb - row, axis=1))

    picks: list[Pick] = []
    while len(picks) < k and eligible.any():
        value = scores.copy()
        if np.isfinite(nearest).all():
            # Before any anchor exists every distance is infinite: pick by score.
            scale = nearest.max() if nearest.max() > 0 else 1.0
            value = value * (nearest / scale) ** diversity
        value[~eligible] = -np.inf
        best = int(np.argmax(value))
        chosen = int(index[best])
        picks.append(Pick(slice=chosen, score=float(scores[best]), rank=len(picks) + 1))
        exclude_near(chosen)
        nearest = np.minimum(nearest, np.linalg.norm(emb - emb[best], axis=1))
    return picks


def best_spaced_batch(
    index: np.ndarray, scores: np.ndarray, eligible: np.ndarray, k: int, gap: int
) -> list[int]:
    """Rows of the best batch of eligible slices at least ``gap`` apart.

    Best = as many slices as fit (at most ``k``), then the highest total score.
    Dynamic programming over the slices in axis order: ``total[i, j]`` is the
    best total of ``j`` picks among the first ``i`` eligible slices, and a pick
    at slice ``s`` combines with the best ``j - 1`` picks at or below
    ``s - gap``. Ties go to lower slice indices.
    """
    rows = np.flatnonzero(eligible)
    rows = rows[np.argsort(index[rows], kind="stable")]
    n, k = len(rows), max(int(k), 0)
    pos = index[rows]
    # before[i]: how many of the sorted eligible slices lie at or below pos[i] - gap.
    before = np.searchsorted(pos, pos - gap, side="right")
    total = np.full((n + 1, k + 1), -np.inf)
    total[:, 0] = 0.0
    took = np.zeros((n + 1, k + 1), dtype=bool)
    for i in range(1, n + 1):
        take = total[before[i - 1], :-1] + scores[rows[i - 1]]
        skip = total[i - 1, 1:]
        took[i, 1:] = take > skip
        total[i, 1:] = np.where(took[i, 1:], take, skip)
    j = int(np.flatnonzero(np.isfinite(total[n]))[-1])
    chosen, i = [], n
    while j > 0:
        if took[i, j]:
            chosen.append(int(rows[i - 1]))
            i, j = int(before[i - 1]), j - 1
        else:
            i -= 1
    return chosen

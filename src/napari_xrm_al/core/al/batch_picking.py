"""Taking a batch of slices from their scores, kept apart along the axis.

A neighbour of a labelled slice teaches the model almost nothing new, so
every picker keeps a minimum distance along the slice axis between picks and
from the slices already labelled. Slices are slice codes
(:func:`~napari_xrm_al.core.slice_refs.slice_codes`): slices of different
axes are far apart, so the distance applies within each axis. A batch may
also be spread over the candidate axes (:func:`axis_room`): a cross-section
shows every layer of a package, where the best few z slices by score often
lie in one layer.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_xrm_al.core.slice_refs import CODE_STRIDE, SliceRef, ref_of_code

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
    axis_room: Mapping[int, int] | None = None,
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
    are returned, best score first. ``axis_room`` (axis → picks it may still
    take, see :func:`axis_room`) caps the picks along each axis while other
    axes can still take picks; where they cannot (a thin volume, slices kept
    apart), the capped axes fill the rest of the batch.
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

    room = dict(axis_room) if axis_room is not None else None
    open_axis = np.ones(len(index), dtype=bool)
    if room is not None:
        open_axis = np.isin(index // CODE_STRIDE, [a for a, n in room.items() if n > 0])

    if embedding is None or diversity <= 0:
        rows = best_spaced_batch(index, scores, eligible, k, gap, room)
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
        if not (eligible & open_axis).any():
            open_axis[:] = True  # every open axis is full: the cap yields
        value = scores.copy()
        if np.isfinite(nearest).all():
            # Before any anchor exists every distance is infinite: pick by score.
            scale = nearest.max() if nearest.max() > 0 else 1.0
            value = value * (nearest / scale) ** diversity
        value[~(eligible & open_axis)] = -np.inf
        best = int(np.argmax(value))
        chosen = int(index[best])
        picks.append(Pick(slice=chosen, score=float(scores[best]), rank=len(picks) + 1))
        exclude_near(chosen)
        if room is not None:
            room[chosen // CODE_STRIDE] -= 1
            if room[chosen // CODE_STRIDE] <= 0:
                open_axis[index // CODE_STRIDE == chosen // CODE_STRIDE] = False
        nearest = np.minimum(nearest, np.linalg.norm(emb - emb[best], axis=1))
    return picks


def axis_room(
    index: np.ndarray,
    k: int,
    picked: Sequence[int] = (),
    *,
    labelled: Sequence[int] | None = None,
) -> dict[int, int]:
    """How many more picks each axis of ``index`` may take in a batch of ``k``
    spread over the axes: ``ceil(k / axes)`` each, less the ``picked`` codes.

    With ``labelled`` (the slices labelled so far) an axis may also hold at
    most its share of the candidates, rounded up, of the labelled slices plus
    the batch: along z, y, x of a 128 × 256 × 256 volume z holds 1 in 5, as
    random picks would.
    """
    index = np.asarray(index)
    axis_of = index // CODE_STRIDE
    axes, counts = np.unique(axis_of, return_counts=True)
    cap = -(-k // max(len(axes), 1))
    room = {int(a): cap for a in axes}
    if labelled is not None:
        held = np.asarray(list(labelled), dtype=np.int64) // CODE_STRIDE
        total = len(held) + k
        for a, n in zip(axes, counts, strict=True):
            share = -(-n * total // len(index))
            room[int(a)] = min(cap, share - int((held == a).sum()))
    for code in picked:
        room[int(code) // CODE_STRIDE] -= 1
    return room


def best_spaced_batch(
    index: np.ndarray,
    scores: np.ndarray,
    eligible: np.ndarray,
    k: int,
    gap: int,
    room: Mapping[int, int] | None = None,
) -> list[int]:
    """Rows of the best batch of eligible slices at least ``gap`` apart, at
    most ``room[axis]`` along each axis when ``room`` is given.

    Best = as many slices as fit (at most ``k``), then the highest total score.
    Without ``room`` one :func:`_SpacedTable` over all slices (codes of
    different axes lie far apart); with it, one table per axis and the split of
    ``k`` between the axes that is best. When the axes with room cannot fill
    the batch, the room of each axis that used all of its room grows by the
    shortfall, so a cap never leaves a batch short while slices that fit remain.
    """
    if room is None:
        return _SpacedTable(index, scores, eligible, k, gap)(None)
    axis_of = np.asarray(index) // CODE_STRIDE
    caps = {a: max(n, 0) for a, n in room.items()}
    while True:
        tables = {
            a: _SpacedTable(index, scores, eligible & (axis_of == a), min(k, n), gap)
            for a, n in caps.items()
            if n > 0
        }
        best, split = (-1, -np.inf), dict.fromkeys(tables, 0)
        for counts in itertools.product(*(range(t.most + 1) for t in tables.values())):
            if sum(counts) <= k:
                value = (
                    sum(counts),
                    sum(
                        t.totals[j]
                        for t, j in zip(tables.values(), counts, strict=True)
                    ),
                )
                if value > best:
                    best, split = value, dict(zip(tables, counts, strict=True))
        short = k - best[0]
        # Axes that took all their room and might take more.
        full = {a for a, n in caps.items() if n < k and (n == 0 or tables[a].most == n)}
        if short <= 0 or not full:
            return [row for a, t in tables.items() for row in t(split[a])]
        caps = {a: n + short if a in full else n for a, n in caps.items()}


class _SpacedTable:
    """Dynamic programming over the eligible slices in axis order: ``total[i,
    j]`` is the best total of ``j`` picks among the first ``i`` eligible
    slices, and a pick at slice ``s`` combines with the best ``j - 1`` picks at
    or below ``s - gap``. Ties go to lower slice indices. ``totals[j]``: the
    best total of ``j`` picks (``most``: the most that fit, at most ``k``);
    calling the table with ``j`` (None: ``most``) gives the rows of that batch.
    """

    def __init__(
        self,
        index: np.ndarray,
        scores: np.ndarray,
        eligible: np.ndarray,
        k: int,
        gap: int,
    ) -> None:
        rows = np.flatnonzero(eligible)
        rows = rows[np.argsort(index[rows], kind="stable")]
        n, k = len(rows), max(int(k), 0)
        pos = index[rows]
        # before[i]: how many sorted eligible slices lie at or below pos[i] - gap.
        before = np.searchsorted(pos, pos - gap, side="right")
        total = np.full((n + 1, k + 1), -np.inf)
        total[:, 0] = 0.0
        took = np.zeros((n + 1, k + 1), dtype=bool)
        for i in range(1, n + 1):
            take = total[before[i - 1], :-1] + scores[rows[i - 1]]
            skip = total[i - 1, 1:]
            took[i, 1:] = take > skip
            total[i, 1:] = np.where(took[i, 1:], take, skip)
        self.rows, self.before, self.took = rows, before, took
        self.totals = total[n]
        self.most = int(np.flatnonzero(np.isfinite(self.totals))[-1])

    def __call__(self, j: int | None) -> list[int]:
        j = self.most if j is None else j
        chosen, i = [], len(self.rows)
        while j > 0:
            if self.took[i, j]:
                chosen.append(int(self.rows[i - 1]))
                i, j = int(self.before[i - 1]), j - 1
            else:
                i -= 1
        return chosen

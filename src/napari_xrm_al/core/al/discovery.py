"""Discovery before exploitation: cover what is not labelled yet, then hunt the rare.

An uncertainty score cannot see a class the model was never shown, nor a
structure it predicts wrongly with confidence (copper pillars called solder
with p = 0.99). Both show up elsewhere: a class without labelled pixels, and
slices whose *predicted class composition* is unlike that of every labelled
slice. While either holds, part of each batch goes to **novelty** (slices
unlike every labelled one, spread over the encoder's embedding) and the rest
to the exploiting score (rareness). The split is automatic:

- some class has no labelled pixel: half the batch (rounded up) covers;
- otherwise, ``n`` candidate slices are novel (composition distance above
  :data:`NOVELTY_THRESHOLD`): ``min(n, k // 2)`` cover;
- otherwise the whole batch exploits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from napari_xrm_al.core.al.batch_picking import Pick, axis_room, pick_batch

#: Composition distance (total variation, 0..1) above which a slice is "unlike
#: every labelled slice": a fifth of its pixels predicted as other classes.
NOVELTY_THRESHOLD = 0.2


@dataclass(frozen=True)
class DiscoveryPlan:
    """How a batch is split between covering and exploiting, and why.

    Parameters
    ----------
    cover
        Slices picked for novelty.
    exploit
        Slices picked by the exploiting score.
    unseen
        Class ids without a labelled pixel.
    novel
        Candidate slices whose predicted composition is unlike every labelled slice.
    """

    cover: int
    exploit: int
    unseen: tuple[int, ...]
    novel: int

    def describe(self, class_names: Sequence[str], rare: str = "rare classes") -> str:
        """One sentence for the dock and the command line."""
        parts = []
        if self.cover:
            if self.unseen:
                why = "no labelled " + ", ".join(class_names[c] for c in self.unseen)
            else:
                why = f"{self.novel} slices predicted unlike every labelled slice"
            parts.append(
                f"{self.cover} slice{'s' * (self.cover != 1)} to cover what is "
                f"not labelled yet ({why})"
            )
        if self.exploit:
            parts.append(f"{self.exploit} for {rare}")
        return ", ".join(parts) + "." if parts else "No slice left to pick."


def rare_label(classes: Any) -> str:
    """What the exploiting picks hunt, for :meth:`DiscoveryPlan.describe`:
    the class table's rare classes by name."""
    names = [classes.names[c] for c in classes.rare_ids]
    return " and ".join(names) if names else "the rarest classes"


def composition_distance(
    index: np.ndarray, class_fraction: np.ndarray, labelled: Sequence[int]
) -> np.ndarray:
    """``(S,)`` total-variation distance of each slice's predicted class
    composition to the nearest labelled slice's (1 when none is labelled)."""
    rows = np.flatnonzero(np.isin(index, list(labelled)))
    if not len(rows):
        return np.ones(len(index))
    frac = np.asarray(class_fraction, dtype=np.float64)
    diff = np.abs(frac[:, None, :] - frac[None, rows, :]).sum(axis=2) / 2
    return diff.min(axis=1)


def plan_discovery(
    labelled_counts: np.ndarray, novelty: np.ndarray, eligible: np.ndarray, k: int
) -> DiscoveryPlan:
    """The split of a batch of ``k`` (see the module docstring)."""
    counts = np.asarray(labelled_counts)
    unseen = tuple(int(c) for c in np.flatnonzero(counts == 0)) if counts.sum() else ()
    novel = int((novelty[eligible] > NOVELTY_THRESHOLD).sum())
    cover = (k + 1) // 2 if unseen else min(novel, k // 2)
    return DiscoveryPlan(cover, k - cover, unseen, novel)


def discovery_batch(
    ctx: Any,
    k: int,
    exploit_score: Callable[[Any], np.ndarray],
    *,
    min_distance: int,
    diversity: float = 0.0,
    spread_axes: bool = False,
    axis_share: bool = False,
) -> tuple[np.ndarray, list[Pick], DiscoveryPlan]:
    """Pick ``k`` slices: some for novelty, the rest by ``exploit_score``.

    ``ctx`` is an :class:`~napari_xrm_al.core.al.acquisition.AcquisitionContext`.
    Novelty picks are greedy on composition distance times embedding distance
    to the nearest labelled or picked slice (k-centre greedy over the novel
    slices); exploiting picks then keep their distance from those, and with
    ``diversity > 0`` (and embeddings) are spread over the embedding as
    :func:`~napari_xrm_al.core.al.batch_picking.pick_batch` does. With
    ``spread_axes`` the whole batch takes at most ``ceil(k / axes)`` slices
    along each candidate axis while the others can take the rest
    (:func:`~napari_xrm_al.core.al.batch_picking.axis_room`); with
    ``axis_share`` each axis also holds at most its share of the candidates.

    Returns
    -------
    scores
        ``(S,)`` the exploiting scores.
    picks
        Novelty picks first, then the exploiting ones, ranked in that order.
    plan
        The split and its reasons.
    """
    index = np.asarray(ctx.index)
    novelty = composition_distance(index, ctx.class_fraction, ctx.labelled)
    gap = max(min_distance, 1)
    near = [np.abs(index - s) < gap for s in ctx.labelled]
    eligible = ~np.any(near, axis=0) if near else np.ones(len(index), bool)
    plan = plan_discovery(ctx.labelled_counts, novelty, eligible, k)
    share_of = ctx.labelled if axis_share else None
    cover = pick_batch(
        index,
        novelty + 1e-6,  # no tie at 0 among slices like the labelled ones
        plan.cover,
        labelled=ctx.labelled,
        min_distance=min_distance,
        embedding=ctx.embedding,
        diversity=1.0 if ctx.embedding is not None else 0.0,
        axis_room=axis_room(index, k, labelled=share_of) if spread_axes else None,
    )
    scores = exploit_score(ctx)
    exploit = pick_batch(
        index,
        scores,
        k - len(cover),
        labelled=[*ctx.labelled, *(p.slice for p in cover)],
        min_distance=min_distance,
        embedding=ctx.embedding if diversity > 0 else None,
        diversity=diversity,
        axis_room=axis_room(index, k, [p.slice for p in cover], labelled=share_of)
        if spread_axes
        else None,
    )
    plan = replace(plan, cover=len(cover), exploit=len(exploit))
    picks = [
        Pick(p.slice, p.score, rank, reason)
        for rank, (p, reason) in enumerate(
            [(p, "cover") for p in cover] + [(p, "rare") for p in exploit], start=1
        )
    ]
    return scores, picks, plan

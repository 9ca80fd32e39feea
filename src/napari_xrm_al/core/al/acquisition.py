"""Acquisition: which slices should the analyst label next.

Every strategy scores **every** candidate slice from per-slice summaries of one
prediction pass (:class:`~napari_xrm_al.core.inference.predict.SliceSummary`), so ranking
never needs a probability volume. The batch picker
(:mod:`~napari_xrm_al.core.al.batch_picking`) then takes ``k`` slices, keeping a
minimum distance along the slice axis from each other and from the slices
already labelled.

Adding a strategy is one function registered with :func:`register`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from napari_xrm_al.core.al.batch_picking import (
    DEFAULT_MIN_DISTANCE,
    Pick,
    axis_room,
    pick_batch,
)
from napari_xrm_al.core.al.discovery import DiscoveryPlan, discovery_batch
from napari_xrm_al.errors import XrmError


@dataclass(frozen=True)
class RarenessParams:
    """Parameters of the rareness-aware score (method.md).

    Parameters
    ----------
    alpha
        Exponent of the rareness weight ``w_c = (f_c + eps) ** -alpha``.
    eps
        Floor added to class frequencies so unseen classes get a finite weight.
    lam
        Constant added to the pixel entropy so that confidently predicted rare
        pixels still count.
    diversity
        Exponent of the embedding-distance factor used by ``rareness-diverse``.
    """

    alpha: float = 1.0
    eps: float = 1e-3
    lam: float = 0.05
    diversity: float = 1.0


@dataclass
class AcquisitionContext:
    """What a strategy may look at.

    Parameters
    ----------
    index
        ``(S,)`` slice indices that were scored (candidates and labelled alike).
    mean_entropy, mean_margin
        ``(S,)`` mean pixel entropy and mean ``1 - (p1 - p2)``.
    class_fraction
        ``(S, C)`` fraction of pixels predicted as each class.
    entropy_by_class
        ``(S, C)`` mean over pixels of ``entropy * [argmax == c]``.
    labelled_counts
        ``(C,)`` labelled pixels per class so far (all zero before any labels).
    bald
        ``(S,)`` MC-dropout mutual information, when sampled.
    embedding
        ``(S, D)`` encoder embeddings, when computed.
    labelled
        Slice indices already labelled.
    seed
        Seed for strategies with randomness.
    rareness
        Parameters of the rareness-aware score.
    """

    index: np.ndarray
    mean_entropy: np.ndarray
    mean_margin: np.ndarray
    class_fraction: np.ndarray
    entropy_by_class: np.ndarray
    labelled_counts: np.ndarray
    bald: np.ndarray | None = None
    embedding: np.ndarray | None = None
    labelled: Sequence[int] = ()
    seed: int = 0
    rareness: RarenessParams = field(default_factory=RarenessParams)

    @classmethod
    def from_summary(
        cls, summary: object, labelled_counts: np.ndarray, **kwargs: object
    ):
        """Build a context from a prediction summary (any object with the fields)."""
        return cls(
            index=np.asarray(summary.index),
            mean_entropy=np.asarray(summary.mean_entropy),
            mean_margin=np.asarray(summary.mean_margin),
            class_fraction=np.asarray(summary.class_fraction),
            entropy_by_class=np.asarray(summary.entropy_by_class),
            bald=None if summary.bald is None else np.asarray(summary.bald),
            embedding=None
            if summary.embedding is None
            else np.asarray(summary.embedding),
            labelled_counts=np.asarray(labelled_counts, dtype=np.float64),
            **kwargs,
        )


@dataclass(frozen=True)
class Strategy:
    """One acquisition strategy.

    Parameters
    ----------
    name
        Registry key (``--strategy`` on the command line).
    score
        ``score(ctx) -> (S,)`` higher is more worth labelling.
    description
        One line for ``--help`` and tooltips.
    needs
        Summary fields the strategy needs beyond the single pass
        (``"bald"``, ``"embedding"``).
    diverse
        Whether picks are spread in embedding space (score times a power of the
        distance to the nearest labelled or already picked slice); for a
        discovery strategy, its exploiting picks.
    discovery
        Whether part of each batch goes to novelty first
        (:mod:`~napari_xrm_al.core.al.discovery`); ``score`` picks the rest.
    spread_axes
        Whether a batch of candidates along several axes takes at most
        ``ceil(k / axes)`` slices along each while the others can take the rest
        (:func:`~napari_xrm_al.core.al.batch_picking.axis_room`).
    axis_share
        With ``spread_axes``: an axis also holds at most its share of the
        candidates among the labelled slices and the batch.
    """

    name: str
    score: Callable[[AcquisitionContext], np.ndarray]
    description: str
    needs: frozenset[str] = frozenset()
    diverse: bool = False
    discovery: bool = False
    spread_axes: bool = False
    axis_share: bool = False


STRATEGIES: dict[str, Strategy] = {}


def register(
    name: str,
    description: str,
    *,
    needs: Sequence[str] = (),
    diverse: bool = False,
    discovery: bool = False,
    spread_axes: bool = False,
    axis_share: bool = False,
) -> Callable[[Callable[[AcquisitionContext], np.ndarray]], Callable]:
    """Decorator adding a scoring function to :data:`STRATEGIES`."""

    def decorator(func: Callable[[AcquisitionContext], np.ndarray]) -> Callable:
        STRATEGIES[name] = Strategy(
            name,
            func,
            description,
            frozenset(needs),
            diverse,
            discovery,
            spread_axes,
            axis_share,
        )
        return func

    return decorator


def get_strategy(name: str) -> Strategy:
    """The strategy called ``name``; :class:`XrmError` naming the choices otherwise."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise XrmError(
            f"Unknown acquisition strategy {name!r}; choose one of {sorted(STRATEGIES)}."
        ) from None


def rareness_weights(ctx: AcquisitionContext) -> np.ndarray:
    """``(C,)`` class weights ``(f_c + eps)^-alpha``, max 1 (method.md).

    ``f_c`` is the class's share of the pixels labelled so far, or, before any
    labels, its share of the pixels predicted over all scored slices.
    """
    counts = np.asarray(ctx.labelled_counts, dtype=np.float64)
    if counts.sum() > 0:
        freq = counts / counts.sum()
    else:
        predicted = ctx.class_fraction.mean(axis=0)
        freq = predicted / max(predicted.sum(), 1e-12)
    p = ctx.rareness
    weights = (freq + p.eps) ** (-p.alpha)
    return weights / weights.max()


def unseen_weight(ctx: AcquisitionContext) -> float:
    """Weight every pixel carries for the classes that have no labelled pixel yet.

    A model cannot predict a class it was never shown, so such a class shows
    up only as uncertainty, whatever class is predicted: each pixel gets the
    (maximal, normalised) weight of the unseen classes on top of
    ``w[yhat(x)]``. 1 while some class is unlabelled, 0 once every class has
    labelled pixels, and 0 before any labels (the weights then come from
    predictions, see :func:`rareness_weights`).
    """
    counts = np.asarray(ctx.labelled_counts, dtype=np.float64)
    return float(counts.sum() > 0 and (counts == 0).any())


def _rareness_of_predicted(ctx: AcquisitionContext) -> np.ndarray:
    # mean_x w_yhat(x) * (lam + u(x)) splits exactly into per-class sums.
    w = rareness_weights(ctx)
    return ctx.rareness.lam * ctx.class_fraction @ w + ctx.entropy_by_class @ w


def _rareness(ctx: AcquisitionContext) -> np.ndarray:
    unseen = unseen_weight(ctx) * (ctx.rareness.lam + ctx.mean_entropy)
    return _rareness_of_predicted(ctx) + unseen


register(
    "rareness",
    "rareness-aware: uncertainty weighted towards rare predicted classes "
    "(and, while a class has no labels, towards any uncertainty)",
)(_rareness)
register(
    "rareness-discovery",
    "rareness-aware, with part of each batch first covering what is not labelled "
    "yet (classes without labels, slices predicted unlike every labelled one)",
    discovery=True,
)(_rareness_of_predicted)
register(
    "rareness-discovery-diverse",
    "rareness-discovery whose rare-hunting picks are also spread out over the "
    "model's slice embeddings (not two slices of one layer)",
    needs=("embedding",),
    diverse=True,
    discovery=True,
)(_rareness_of_predicted)
register(
    "rareness-discovery-axes",
    "rareness-discovery whose batches spread over the candidate axes (a batch "
    "of k takes at most ceil(k / axes) slices along one axis)",
    discovery=True,
    spread_axes=True,
)(_rareness_of_predicted)
register(
    "rareness-discovery-spread",
    "rareness-discovery with both spreads: rareness picks spread over the "
    "model's slice embeddings, and each batch over the candidate axes",
    needs=("embedding",),
    diverse=True,
    discovery=True,
    spread_axes=True,
)(_rareness_of_predicted)
register(
    "rareness-discovery-share",
    "rareness-discovery-spread whose axes also hold at most their share of the "
    "candidates among the labelled slices (z of a 128 x 256 x 256 scan: 1 in 5)",
    needs=("embedding",),
    diverse=True,
    discovery=True,
    spread_axes=True,
    axis_share=True,
)(_rareness_of_predicted)
register(
    "rareness-diverse",
    "rareness-aware, spread out over the encoder's slice embeddings",
    needs=("embedding",),
    diverse=True,
)(_rareness)


@register("random", "random slices (baseline)")
def _random(ctx: AcquisitionContext) -> np.ndarray:
    return np.random.default_rng(ctx.seed).random(len(ctx.index))


@register("entropy", "mean pixel entropy (baseline)")
def _entropy(ctx: AcquisitionContext) -> np.ndarray:
    return ctx.mean_entropy


@register("margin", "mean 1 - (p1 - p2) margin (baseline)")
def _margin(ctx: AcquisitionContext) -> np.ndarray:
    return ctx.mean_margin


@register("bald", "BALD: MC-dropout mutual information (baseline)", needs=("bald",))
def _bald(ctx: AcquisitionContext) -> np.ndarray:
    return ctx.bald


@register(
    "coreset",
    "core-set: k-centre greedy on the encoder's slice embeddings (baseline)",
    needs=("embedding",),
    diverse=True,
)
def _coreset(ctx: AcquisitionContext) -> np.ndarray:
    return np.ones(len(ctx.index))


def score_slices(strategy: str | Strategy, ctx: AcquisitionContext) -> np.ndarray:
    """``(S,)`` scores of every scored slice under ``strategy``."""
    strat = get_strategy(strategy) if isinstance(strategy, str) else strategy
    for need in strat.needs:
        if getattr(ctx, need) is None:
            raise XrmError(
                f"Strategy {strat.name!r} needs {need} from the prediction pass; "
                "predict with it enabled."
            )
    scores = np.asarray(strat.score(ctx), dtype=np.float64)
    if scores.shape != ctx.index.shape:
        raise AssertionError(f"strategy {strat.name} returned shape {scores.shape}")
    return np.nan_to_num(scores, nan=0.0, neginf=0.0, posinf=0.0)


def select(
    strategy: str,
    ctx: AcquisitionContext,
    k: int,
    *,
    min_distance: int = DEFAULT_MIN_DISTANCE,
) -> tuple[np.ndarray, list[Pick], DiscoveryPlan | None]:
    """Score every slice with ``strategy`` and pick a batch of ``k``.

    Returns
    -------
    scores
        ``(S,)`` scores aligned with ``ctx.index``.
    picks
        The picked slices, best first (novelty picks first for a discovery
        strategy).
    plan
        How a discovery strategy split the batch; None for the others.
    """
    strat = get_strategy(strategy)
    diversity = ctx.rareness.diversity if strat.diverse else 0.0
    if strat.discovery:
        return discovery_batch(
            ctx,
            k,
            partial(score_slices, strat),
            min_distance=min_distance,
            diversity=diversity,
            spread_axes=strat.spread_axes,
            axis_share=strat.axis_share,
        )
    scores = score_slices(strat, ctx)
    picks = pick_batch(
        ctx.index,
        scores,
        k,
        labelled=ctx.labelled,
        min_distance=min_distance,
        embedding=ctx.embedding if strat.diverse else None,
        diversity=diversity,
        axis_room=axis_room(
            ctx.index, k, labelled=ctx.labelled if strat.axis_share else None
        )
        if strat.spread_axes
        else None,
    )
    return scores, picks, None

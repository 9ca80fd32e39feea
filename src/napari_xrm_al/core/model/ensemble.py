"""A small ensemble of slice segmenters trained side by side.

Retraining one network on the same few labelled slices with another seed
draws the rare-class edges differently each time (docs/benchmarks.md,
"Stable retraining"). Averaging the class probabilities of a few networks
cancels much of that. The members share nothing but the input: each starts
from the same pretrained encoder with its own decoder initialisation and, in
training, sees its own share of every batch, so ``k`` members train in one
loop for the compute of one network on the whole batch.

In eval mode :class:`SegmenterEnsemble` returns the log of the mean member
probabilities, so every caller that applies ``softmax`` to the output (the
inference engine, validation, MC dropout) gets the ensemble's mean.
"""

from __future__ import annotations

import torch
from torch import nn

from napari_xrm_al.core.model.network import ModelConfig, SliceSegmenter


class SegmenterEnsemble(nn.Module):
    """``cfg.members`` :class:`SliceSegmenter` networks with one interface.

    ``forward`` in training mode splits the batch into one share per member
    and returns the members' logits in batch order (see :func:`split_loss`);
    in eval mode every member sees the whole batch and the output is the log
    of their mean softmax. The encoder features are the first member's.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.members = nn.ModuleList(SliceSegmenter(cfg) for _ in range(cfg.members))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (training: each member on its share) or log mean probabilities."""
        if self.training:
            shares = torch.tensor_split(x, len(self.members))
            return torch.cat([m(s) for m, s in zip(self.members, shares, strict=True)])
        probs = sum(m(x).float().softmax(dim=1) for m in self.members)
        return torch.log(probs / len(self.members))

    def encoder_features(self, x: torch.Tensor) -> torch.Tensor:
        """The first member's bottleneck features (embeddings, core-set)."""
        return self.members[0].encoder_features(x)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The first member's pooled embedding ``(B, D)``."""
        return self.members[0].encode(x)

    @property
    def embedding_dim(self) -> int:
        """D of :meth:`encode`."""
        return self.members[0].embedding_dim

    def load_encoder_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Every member starts from the same pretrained encoder."""
        for member in self.members:
            member.load_encoder_state_dict(state)


def build_network(cfg: ModelConfig) -> SliceSegmenter | SegmenterEnsemble:
    """The network ``cfg`` describes: one segmenter, or an ensemble of several."""
    return SegmenterEnsemble(cfg) if cfg.members > 1 else SliceSegmenter(cfg)


def split_loss(
    loss_fn: nn.Module, logits: torch.Tensor, target: torch.Tensor, members: int
) -> torch.Tensor:
    """Mean over members of ``loss_fn`` on each member's share of the batch
    (the shares of :meth:`SegmenterEnsemble.forward` in training), so a batch
    statistic such as batch Dice never mixes two members' outputs."""
    if members == 1:
        return loss_fn(logits, target)
    pairs = zip(
        torch.tensor_split(logits, members),
        torch.tensor_split(target, members),
        strict=True,
    )
    return torch.stack([loss_fn(lg, t) for lg, t in pairs]).mean()

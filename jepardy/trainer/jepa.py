"""The JEPA auxiliary loss, as the study defines it (its train_gpt.py, cited below).

Each training sequence is cut into patches of `patch_size` tokens. The model's final hidden
state at the last position of patch i is the context; a small predictor maps it to a guess of
the latent of patch i+1, whose target is the RMS-normalised mean of that patch's token
embeddings, computed without gradient (stop-grad). The last patch has no successor.

    jepa_loss = mean_{batch, patches, dims} (unit(pred) - unit(target))^2
              + var_weight * mean_dims relu(std_target - std(pred over batch and patches))

The squared error is a mean over the width as well as over batch and patches, as the study
defines it: its train_gpt.py (openai/parameter-golf, records/track_non_record_16mb/
2026-04-01_JEPA_LeaderStack_StoragePass, `compute_jepa_loss`) takes
`F.mse_loss(pred_n, target_n, reduction="mean")`. That is (2 - 2 cos) / d_model: a sum over
the width would be d_model (512 in the study) times stronger, and `jepa_weight = 0.1` would
mean 51.2 in the study's units, with the variance term 512x weaker relative to it. With the
mean, the study's weights (0.05-0.15, the 0.00-1.00 grid) mean here what they meant there.

Two defects of the study's own code are impossible here: the predictor's output layer is
initialised at random (a zero output makes unit(pred) undefined; its gradient blew up to
~1e9 and global clipping then silenced every real gradient), and the normalisation is
guarded by an epsilon. Optimizer coverage of the predictor is audited in optim.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jepardy.trainer.model import GPT, rms_norm

# Guards unit() against a zero vector: its gradient stays bounded by 1/_NORM_EPS.
_NORM_EPS = 1e-6


class Predictor(nn.Module):
    """RMSNorm -> Linear(d, d) -> ReLU^2 -> Linear(d, d)."""

    def __init__(self, d_model: int, init_std: float) -> None:
        super().__init__()
        self.fc = nn.Linear(d_model, d_model, bias=False)
        self.proj = nn.Linear(d_model, d_model, bias=False)
        # Random, not zero, on both layers: the output must not be identically zero at init.
        nn.init.normal_(self.fc.weight, std=d_model**-0.5)
        nn.init.normal_(self.proj.weight, std=init_std)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(F.relu(self.fc(rms_norm(x))).square())


@dataclass(frozen=True)
class JepaTerms:
    """The JEPA loss and the statistics a run reports about it."""

    loss: Tensor  # scalar, differentiable
    pred_std: Tensor  # scalar, mean over dims of the prediction's std (collapse watch)


def patch_context(hidden: Tensor, patch_size: int) -> Tensor:
    """Hidden states (B, T, D) -> states at the last position of every patch but the last
    (B, T/P - 1, D)."""
    return hidden[:, patch_size - 1 :: patch_size][:, :-1]


def patch_targets(idx: Tensor, embedding: Tensor, patch_size: int) -> Tensor:
    """Token ids (B, T) -> RMS-normalised mean embedding of every patch but the first
    (B, T/P - 1, D), without gradient."""
    with torch.no_grad():
        B, T = idx.shape
        emb = F.embedding(idx, embedding)  # (B, T, D)
        means = emb.view(B, T // patch_size, patch_size, -1).mean(dim=2)  # (B, T/P, D)
        return rms_norm(means[:, 1:].float())


def jepa_loss(pred: Tensor, target: Tensor, var_weight: float, std_target: float) -> JepaTerms:
    """Normalised squared error plus the anti-collapse variance term. pred, target: (B, N, D).

    The error is `F.mse_loss(unit_pred, unit_target)` with reduction "mean" (over B, N and
    D), the study's definition (see the module doc)."""
    pred = pred.float()
    unit_pred = F.normalize(pred, dim=-1, eps=_NORM_EPS)
    unit_target = F.normalize(target.float(), dim=-1, eps=_NORM_EPS)
    distance = F.mse_loss(unit_pred, unit_target, reduction="mean")
    std = pred.flatten(0, 1).std(dim=0, correction=0)  # population std per dim, (D,)
    variance_term = F.relu(std_target - std).mean()
    return JepaTerms(loss=distance + var_weight * variance_term, pred_std=std.mean().detach())


class TargetEncoder(nn.Module):
    """An EMA copy of the token embedding, the study's isolation-lane target (decay 0.995).

    Holds a buffer, not a parameter: it is never optimized, only `update`d after each step.
    """

    def __init__(self, embedding: Tensor, decay: float) -> None:
        super().__init__()
        self.decay = decay
        self.register_buffer("weight", embedding.detach().clone())

    @torch.no_grad()
    def update(self, embedding: Tensor) -> None:
        self.weight.lerp_(embedding.detach(), 1.0 - self.decay)


@dataclass(frozen=True)
class JepaSettings:
    weight: float
    patch_size: int
    var_weight: float
    std_target: float


@dataclass(frozen=True)
class StepLosses:
    """What one forward pass of the training objective returns."""

    total: Tensor
    cross_entropy: Tensor
    jepa: Tensor | None
    jepa_pred_std: Tensor | None


class TrainingObjective(nn.Module):
    """Cross-entropy plus `jepa_weight` * JEPA loss; training only.

    With `jepa is None` (weight 0) there is no predictor at all. Evaluation and export use
    `self.gpt` alone, so neither the predictor nor the target encoder reach the artifact.
    """

    def __init__(
        self, gpt: GPT, jepa: JepaSettings | None, target_encoder: TargetEncoder | None
    ) -> None:
        super().__init__()
        self.gpt = gpt
        self.jepa = jepa
        self.predictor = Predictor(gpt.shape.d_model, gpt.shape.init_std) if jepa else None
        self.target_encoder = target_encoder

    def forward(self, idx: Tensor, targets: Tensor) -> StepLosses:
        hidden = self.gpt(idx)
        logits = self.gpt.logits(hidden)
        ce = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        if self.jepa is None or self.predictor is None:
            return StepLosses(total=ce, cross_entropy=ce, jepa=None, jepa_pred_std=None)
        source = self.target_encoder.weight if self.target_encoder else self.gpt.embed.weight
        target = patch_targets(idx, source, self.jepa.patch_size)
        pred = self.predictor(patch_context(hidden, self.jepa.patch_size))
        terms = jepa_loss(pred, target, self.jepa.var_weight, self.jepa.std_target)
        return StepLosses(
            total=ce + self.jepa.weight * terms.loss,
            cross_entropy=ce,
            jepa=terms.loss,
            jepa_pred_std=terms.pred_std,
        )

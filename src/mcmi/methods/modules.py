"""Trainable pieces several distillers share (connectors, embeddings) and small helpers. Modules
of one method live in that method's file (CRD's memory bank, VID's regressors, ReviewKD's
fusion, HSAKD's auxiliary heads).

Every module here is an ordinary ``nn.Module`` that a distiller holds as a submodule, so its
parameters reach the optimizer through ``Method.trainable_parameters()`` and its parameters and
buffers reach checkpoints through ``state_dict()`` without per-method code.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch.nn.functional as F
from torch import Tensor, nn

from mcmi.losses._precision import fp32_loss
from mcmi.losses.kd import kd_loss


# --------------------------------------------------------------------------------------- helpers
def warmup_factor(epoch: int, warmup_epochs: float) -> float:
    """Linear warm-up of a loss weight: ``min(1, (epoch + 1) / warmup_epochs)`` for the 0-based
    ``epoch`` the trainer passes; this equals mdistiller's ``min(epoch / warmup, 1)`` with its
    1-based epochs (DKD, ReviewKD). ``warmup_epochs <= 0`` disables the warm-up."""
    if warmup_epochs <= 0:
        return 1.0
    return min(1.0, (epoch + 1) / warmup_epochs)


def classification_terms(
    logits: Tensor,
    labels: Tensor,
    ce_weight: float,
    teacher_logits: Tensor | None = None,
    kd_weight: float = 0.0,
    temperature: float = 4.0,
) -> dict[str, Tensor]:
    """The weighted ``ce`` term every distiller has, plus an optional Hinton ``kd`` term
    (RepDistiller's ``-a``; 0 for feature methods, as in the MCMI paper's eq. 21)."""
    losses = {"ce": ce_weight * F.cross_entropy(logits, labels)}
    if kd_weight:
        if teacher_logits is None:
            raise ValueError("kd_weight > 0 needs the teacher's logits")
        losses["kd"] = kd_weight * kd_loss(logits, teacher_logits, temperature)
    return losses


def spatial_sizes(maps: Iterable[Tensor]) -> list[tuple[int, int]]:
    """(H, W) of each (N, C, H, W) map."""
    out = []
    for m in maps:
        if m.dim() != 4:
            raise ValueError(f"expected (N, C, H, W) feature maps, got shape {tuple(m.shape)}")
        out.append((int(m.shape[2]), int(m.shape[3])))
    return out


# ------------------------------------------------------------------------------------ connectors
class ConvRegressor(nn.Module):
    """FitNets' regressor (Romero et al., 2015) in RepDistiller's form: a convolution mapping the
    student map (C_s, H_s, W_s) onto the teacher's (C_t, H_t, W_t), then BN (and ReLU).

    Equal sizes: 1x1 conv. ``H_s = 2 H_t``: 3x3 conv, stride 2. ``2 H_s = H_t``: 4x4 transposed
    conv, stride 2. ``H_s > H_t`` otherwise: a valid conv of kernel
    ``(1 + H_s - H_t, 1 + W_s - W_t)``.
    A smaller student map in any other ratio is not supported.
    """

    def __init__(
        self,
        s_channels: int,
        t_channels: int,
        s_size: tuple[int, int],
        t_size: tuple[int, int],
        relu: bool = True,
    ) -> None:
        super().__init__()
        (hs, ws), (ht, wt) = s_size, t_size
        if (hs, ws) == (ht, wt):
            conv: nn.Module = nn.Conv2d(s_channels, t_channels, 1, bias=False)
        elif (hs, ws) == (2 * ht, 2 * wt):
            conv = nn.Conv2d(s_channels, t_channels, 3, stride=2, padding=1, bias=False)
        elif (2 * hs, 2 * ws) == (ht, wt):
            conv = nn.ConvTranspose2d(s_channels, t_channels, 4, stride=2, padding=1, bias=False)
        elif hs >= ht and ws >= wt:
            conv = nn.Conv2d(s_channels, t_channels, (1 + hs - ht, 1 + ws - wt), bias=False)
        else:
            raise ValueError(
                f"cannot regress a student map of {s_size} onto a teacher map of {t_size}"
            )
        self.conv = conv
        self.bn = nn.BatchNorm2d(t_channels)
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x


class LinearEmbed(nn.Module):
    """A linear projection of flattened features (RepDistiller's CC embedding, 128 dims)."""

    def __init__(self, dim_in: int, dim_out: int = 128) -> None:
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x.flatten(1))


class NormalizedEmbed(LinearEmbed):
    """CRD's embedding head (Tian et al., 2020): linear projection, then L2 normalization, so
    inner products with memory rows are cosine similarities.

    Computed in float32 under any autocast context (:func:`~mcmi.losses._precision.fp32_loss`):
    the embeddings are scored against the float32 memory bank at temperature 0.07, where a bf16
    rounding of the unit vectors (2^-8 relative) would move ``exp(<a, m> / T)`` by several %."""

    @fp32_loss
    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.linear(x.flatten(1)), p=2, dim=1)

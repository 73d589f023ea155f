"""Small helpers shared by the model zoo: weight init, pooling, stage-end activations."""
from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F


def init_weights_(
    model: nn.Module,
    *,
    linear_std: float | None = None,
    linear_zero_bias: bool = False,
) -> None:
    """He (Kaiming) normal init for convolutions, as the reference zoos do.

    Convolutions: ``kaiming_normal_(mode="fan_out", nonlinearity="relu")`` (the same law as the
    references' ``normal_(0, sqrt(2 / (k * k * out_channels)))``), biases zero. BatchNorm: weight 1,
    bias 0. Linear layers keep PyTorch's default unless ``linear_std`` is given (weights then drawn
    from ``N(0, linear_std**2)`` and biases zeroed); ``linear_zero_bias`` zeroes only the biases.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            if linear_std is not None:
                nn.init.normal_(m.weight, 0.0, linear_std)
                nn.init.zeros_(m.bias)
            elif linear_zero_bias:
                nn.init.zeros_(m.bias)


def global_avg_pool(x: Tensor) -> Tensor:
    """(N, C, H, W) -> (N, C) mean over space; works for any size and for channels_last."""
    return x.mean(dim=(2, 3))


def conv_bn_act(seq: nn.Sequential, x: Tensor, act=F.relu) -> tuple[Tensor, Tensor]:
    """Run a ``Sequential(conv, bn, activation)`` keeping the pre-activation.

    Returns ``(act(bn(conv(x))), bn(conv(x)))``; the activation is applied out of place so the
    pre-activation tensor stays intact (the module's own, possibly in-place, activation is skipped).
    """
    pre = seq[1](seq[0](x))
    return act(pre), pre

"""Multi-layer perceptron for vector data (the synthetic Gaussian study, paper Appendix A.6)."""
from __future__ import annotations

from torch import Tensor, nn

from mcmi.models.base import FeatureModel, Features, register_model


class MLP(FeatureModel):
    """``in_dim -> hidden -> ... -> num_classes`` with ReLU; "3-layer" in the paper means three
    linear layers (two hidden layers of 128)."""

    def __init__(self, in_dim: int, num_classes: int, hidden: tuple[int, ...] = (128, 128)) -> None:
        super().__init__()
        dims = (in_dim, *hidden)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.classifier = nn.Linear(dims[-1], num_classes)
        self.stage_channels = list(hidden)
        self.num_features = dims[-1]
        self.num_classes = num_classes

    def forward_features(self, x: Tensor) -> Features:
        stages, preact = [], []
        for layer in self.hidden:
            z = layer(x)
            preact.append(z)
            x = z.relu()
            stages.append(x)
        return Features(logits=self.classifier(x), stages=stages, preact=preact, pooled=x)


@register_model("mlp")
def mlp(num_classes: int, in_dim: int = 30, hidden: tuple[int, ...] = (128, 128)) -> MLP:
    return MLP(in_dim, num_classes, tuple(hidden))

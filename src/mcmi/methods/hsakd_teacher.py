"""HSAKD's teacher step (Yang et al., "Hierarchical Self-supervised Augmented Knowledge
Distillation", IJCAI 2021): auxiliary heads on a (frozen) teacher learn the joint (class x
rotation) labels of 4-fold rotated inputs; the student side is :mod:`mcmi.methods.hsakd`, whose
notes describe both steps, the two forms of heads and how head files are saved and loaded.

Here: the light heads (:class:`AuxiliaryHeads`), :func:`build_aux_heads` for either form, the
reading of saved heads (:func:`load_heads_state`) and the ``hsakd_teacher`` method.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mcmi.config import FieldError
from mcmi.io import torch_save
from mcmi.losses.hsakd import NUM_ROTATIONS, aux_ce_loss, rotate_batch
from mcmi.methods.base import Batch, Method, StepOutput, register_method, require_features
from mcmi.methods.hsakd_heads import HeadsUnavailable, HSAKDHeads, build_authors_heads
from mcmi.methods.modules import spatial_sizes
from mcmi.models.base import FeatureModel, probe_features

HEADS_PREFIX = "aux_heads."
HEAD_FORMS = ("authors", "light")


# ---------------------------------------------------------------------- HSAKD's auxiliary heads
class AuxiliaryHead(nn.Module):
    """One HSAKD auxiliary classifier (Yang et al., 2021), model-agnostic: ``num_downsamples``
    conv3x3(stride 2)-BN-ReLU layers bringing the stage map to the last stage's resolution, one
    conv3x3-BN-ReLU, global average pooling and a linear layer to ``num_outputs`` (= 4 x classes,
    the joint class x rotation labels).

    The light form (``heads="light"``): the authors' heads reuse the backbone's own later stages
    (:mod:`mcmi.methods.hsakd_heads`, the default); these plain conv stacks are a simplification
    that works for every model.
    """

    def __init__(
        self, in_channels: int, width: int, num_downsamples: int, num_outputs: int
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for _ in range(num_downsamples):
            layers += [
                nn.Conv2d(c, width, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            c = width
        layers += [
            nn.Conv2d(c, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        ]
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(width, num_outputs)
        for m in self.body.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.body(x).mean(dim=(2, 3)))


class AuxiliaryHeads(HSAKDHeads):
    """HSAKD's hierarchy of auxiliary heads in the light form, one :class:`AuxiliaryHead` per
    stage map (Yang et al., 2021).

    Built from the stage channels and spatial sizes; ``width`` defaults to the last stage's
    channels capped at ``max_width``. ``forward(maps)`` returns one logit tensor per head; the
    maps are ``Features.stages[map_indices]`` (default ``stages[1:]``, see :meth:`select`).
    The constructor arguments are stored in ``spec`` so a saved state can be checked against it.
    """

    form = "light"

    def __init__(
        self,
        in_channels: Sequence[int],
        sizes: Sequence[tuple[int, int]],
        num_outputs: int,
        width: int | None = None,
        max_width: int = 512,
        map_indices: Sequence[int] | None = None,
    ) -> None:
        if len(in_channels) != len(sizes) or len(in_channels) == 0:
            raise ValueError(
                f"need one size per stage: {len(in_channels)} channels, {len(sizes)} sizes"
            )
        width = min(max_width, in_channels[-1]) if width is None else width
        final = min(min(h, w) for h, w in sizes)
        heads = []
        for c, (h, w) in zip(in_channels, sizes):
            n_down = max(0, round(math.log2(max(min(h, w), 1) / max(final, 1))))
            heads.append(AuxiliaryHead(c, width, n_down, num_outputs))
        indices = range(1, len(heads) + 1) if map_indices is None else map_indices
        super().__init__(heads, list(indices), {
            "in_channels": list(in_channels),
            "sizes": [tuple(s) for s in sizes],
            "num_outputs": num_outputs,
            "width": width,
        })


def build_aux_heads(
    model: FeatureModel,
    image_shape: tuple[int, ...] = (3, 32, 32),
    max_width: int = 512,
    form: str = "authors",
) -> HSAKDHeads:
    """HSAKD heads for ``model``, ``4 * num_classes`` outputs each, in ``form`` (module
    docstring): ``"authors"`` (:func:`~mcmi.methods.hsakd_heads.build_authors_heads`; where they
    cannot be built, the light heads with a warning) or ``"light"`` (:func:`light_heads`)."""
    if form not in HEAD_FORMS:
        raise ValueError(f"HSAKD heads must be one of {list(HEAD_FORMS)}, got {form!r}")
    if form == "light":
        return light_heads(model, image_shape, max_width)
    try:
        heads: HSAKDHeads = build_authors_heads(model, tuple(image_shape))
    except HeadsUnavailable as why:
        warnings.warn(
            f"HSAKD: the authors' heads cannot be built for {type(model).__name__} ({why}); "
            "using the light heads (set heads='light' to choose them and silence this)",
            stacklevel=2,
        )
        heads = light_heads(model, image_shape, max_width)
        heads.spec["requested"] = "authors"
    ref = next(iter(model.parameters()), None)
    return heads.to(ref.device) if ref is not None else heads


def light_heads(
    model: FeatureModel, image_shape: tuple[int, ...] = (3, 32, 32), max_width: int = 512
) -> AuxiliaryHeads:
    """Light HSAKD heads for ``model``: one per entry of ``stages[1:]``.

    ``stages[1:]`` are, for most zoo families, the maps the authors' heads read (their
    backbones' ``is_feat`` lists: e.g. the 12/16/48/160-channel maps of MobileNetV2, the raw
    residual sums of Wide ResNets; VGG's differ, see :mod:`mcmi.methods.hsakd_heads`). The
    heads' width is the model's pooled width capped at ``max_width``, as the authors' heads end
    at the backbone's final width (1280 for MobileNetV2, 1024 for ShuffleNetV2)."""
    probe = probe_features(model, image_shape)
    maps = probe.stages[1:]
    if not maps:
        raise ValueError("HSAKD needs at least one stage after the stem")
    return AuxiliaryHeads(
        [m.shape[1] for m in maps],
        spatial_sizes(maps),
        NUM_ROTATIONS * model.num_classes,
        width=min(max_width, model.num_features),
        max_width=max_width,
    )


def _find_heads_state(obj: Any) -> dict[str, Tensor] | None:
    """The ``aux_heads.*`` entries of a (possibly nested) state dict, prefix stripped."""
    if not isinstance(obj, Mapping):
        return None
    found = {
        k[len(HEADS_PREFIX) :]: v
        for k, v in obj.items()
        if isinstance(k, str) and k.startswith(HEADS_PREFIX)
    }
    if found:
        return found
    for value in obj.values():
        nested = _find_heads_state(value)
        if nested:
            return nested
    return None


def load_heads_state(source: Any) -> dict[str, Tensor]:
    """A heads state dict from a path, a (nested) state dict, an :class:`HSAKDTeacher` or heads."""
    if isinstance(source, HSAKDHeads):
        return source.state_dict()
    if isinstance(source, HSAKDTeacher):
        return source.aux_heads.state_dict()
    if isinstance(source, (str, os.PathLike)):
        source = torch.load(source, map_location="cpu", weights_only=True)
    state = _find_heads_state(source)
    if (
        state is None
        and isinstance(source, Mapping)
        and source
        and all(isinstance(k, str) and k.startswith("heads.") for k in source)
    ):
        state = dict(source)  # a bare AuxiliaryHeads.state_dict()
    if state is None:
        raise ValueError(
            "no HSAKD auxiliary-head weights (keys 'aux_heads.*' or 'heads.*') "
            "found in teacher_heads"
        )
    return state


def heads_form_of(state: Mapping[str, Any]) -> str | None:
    """The form of saved heads (``"authors"``, ``"light"``) from their keys, or None."""
    keys = [k for k in state if isinstance(k, str)]
    if any(".extractor." in k for k in keys):
        return "authors"
    if any(".body." in k for k in keys):
        return "light"
    return None


def check_heads_form(state: Mapping[str, Any], heads: HSAKDHeads, what: str, option: str) -> None:
    """A clear error when ``state`` holds heads of another form than ``heads``."""
    saved = heads_form_of(state)
    if saved is not None and saved != heads.form:
        raise ValueError(
            f"{what} holds HSAKD heads of the {saved!r} form, but these heads are of the "
            f"{heads.form!r} form: set {option}={saved!r} to use them"
            + (" (the authors' heads cannot be built for this model)"
               if heads.spec.get("requested") == "authors" else "")
        )


def heads_part(state: Mapping[str, Any]) -> dict[str, Any]:
    """The ``aux_heads.*`` entries of a method's state dict, prefix stripped."""
    return {k[len(HEADS_PREFIX):]: v for k, v in state.items()
            if isinstance(k, str) and k.startswith(HEADS_PREFIX)}


@dataclass
class HSAKDTeacherConfig:
    """Teacher-side HSAKD: cross-entropy of every head against the joint labels (weight 1 each,
    the authors' ``train_teacher_cifar.py``); with an unfrozen backbone, plus the backbone's CE on
    the unrotated images. ``heads``: ``"authors"`` (the authors' heads, default) or ``"light"``
    (see :mod:`mcmi.methods.hsakd`). ``max_head_width`` caps the light heads' width (e.g.
    MobileNetV2's 1280). ``image_shape``: the input's shape, for the probe forward that sizes the
    heads (the training run passes its data set's)."""

    freeze_backbone: bool = True
    aux_weight: float = 1.0
    ce_weight: float = 1.0
    max_head_width: int = 512
    heads: str = "authors"
    image_shape: tuple[int, ...] = (3, 32, 32)

    def __post_init__(self) -> None:
        if self.heads not in HEAD_FORMS:
            raise FieldError("heads", f"must be one of {list(HEAD_FORMS)}, got {self.heads!r}")


@register_method("hsakd_teacher")
class HSAKDTeacher(Method):
    """HSAKD teacher step (Yang et al., IJCAI 2021): trains auxiliary heads on a teacher with 4-fold
    rotated inputs and joint (class x rotation) labels; options: :class:`HSAKDTeacherConfig`.

    Inputs are rotated 4-fold inside :meth:`forward`, so a batch of N images costs 4N forwards;
    the returned logits are those of the N unrotated images.
    """

    options = HSAKDTeacherConfig
    display_name = "HSAKD teacher heads"
    test_options = {"heads": "light"}  # the authors' heads need a zoo model; light ones are faster

    def __init__(self, model: FeatureModel, **options) -> None:
        require_features(self, model, "model")
        super().__init__(model, **options)
        cfg = self.cfg
        self.aux_heads = build_aux_heads(model, cfg.image_shape, cfg.max_head_width, cfg.heads)
        if self.cfg.freeze_backbone:
            self.model.requires_grad_(False)
            self.model.eval()

    def train(self, mode: bool = True) -> HSAKDTeacher:
        super().train(mode)
        if self.cfg.freeze_backbone:
            self.model.eval()  # a frozen backbone keeps its batch-norm statistics
        return self

    def forward(self, batch: Batch, epoch: int = 0) -> StepOutput:
        x, y = rotate_batch(batch["image"], batch["label"])
        assert y is not None
        if self.cfg.freeze_backbone:
            with torch.no_grad():
                feats = self.model.forward_features(x)
            stages = [m.detach() for m in self.aux_heads.select(feats.stages)]
        else:
            feats = self.model.forward_features(x)
            stages = self.aux_heads.select(feats.stages)
        losses = {"aux_ce": self.cfg.aux_weight * aux_ce_loss(self.aux_heads(stages), y)}
        logits = feats.logits[0::NUM_ROTATIONS]
        if not self.cfg.freeze_backbone:
            losses["ce"] = self.cfg.ce_weight * F.cross_entropy(logits, batch["label"])
        return StepOutput(logits, losses)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        check_heads_form(heads_part(state_dict), self.aux_heads, "the checkpoint",
                         "method_args.heads")
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def heads_state_dict(self) -> dict[str, Tensor]:
        """The heads' weights, keys prefixed ``aux_heads.`` (read by :func:`load_heads_state`)."""
        return {HEADS_PREFIX + k: v.detach().cpu() for k, v in self.aux_heads.state_dict().items()}

    def save_heads(self, path: str | os.PathLike) -> None:
        """Write :meth:`heads_state_dict` with ``torch.save``, atomically (loads with
        ``weights_only=True``)."""
        torch_save(path, self.heads_state_dict())

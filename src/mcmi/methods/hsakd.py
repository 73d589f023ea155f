"""HSAKD (Yang et al., "Hierarchical Self-supervised Augmented Knowledge Distillation", IJCAI
2021): auxiliary heads after every stage classify the joint (class x rotation) label of
4-fold rotated inputs; the student mimics the teacher's heads and final classifier.

Two steps, two methods:

1. ``hsakd_teacher`` (:class:`HSAKDTeacher`) trains the teacher's auxiliary heads. By default the
   teacher backbone (e.g. an MCMI teacher) is frozen, as in the authors' "pre-trained backbone"
   mode (``train_teacher_cifar.py --freezed``; their recipe: 100 epochs, lr 0.05 decayed x0.1 at
   30/60/90, batch 64, SGD). ``freeze_backbone=False`` trains backbone and heads jointly.
2. ``hsakd`` (:class:`HSAKD`) distils into a student that gets heads of its own.

Saving and loading the teacher's heads: the trainer's checkpoint of ``hsakd_teacher`` holds
``method.state_dict()``, whose keys are ``model.*`` (the backbone) and ``aux_heads.*`` (the heads);
:meth:`HSAKDTeacher.save_heads` writes just the ``aux_heads.*`` tensors to a file. The student
distiller takes ``teacher_heads=`` one of: such a file path, either kind of state dict (also
nested in a checkpoint dict, found by its ``aux_heads.`` keys), an :class:`HSAKDTeacher`, or an
:class:`~mcmi.methods.hsakd.AuxiliaryHeads`. The heads are rebuilt from the teacher model
(stage channels and sizes at ``image_shape``) and loaded strictly, so a head file of another
teacher architecture is an error, not a silent mismatch.

Two forms of heads, option ``heads`` of both methods:

- ``"authors"`` (default of ``hsakd_teacher``): the HSAKD authors' heads (their code,
  github.com/winycg/HSAKD, ``models/*.py``: ``Auxiliary_Classifier``): each head is a fresh copy
  of the backbone's later stages (the last head: the last stage again, at stride 1), the
  backbone's pre-pooling tail, global average pooling and a linear layer; see
  :mod:`mcmi.methods.hsakd_heads` for the stages of each zoo family (ResNets, Wide ResNets, VGG,
  MobileNetV2, ShuffleNetV1/V2). For any other model (e.g. one made with :func:`mcmi.wrap`, the
  ImageNet MobileNetV2, an MLP), or a zoo model that does not expose the maps those heads read,
  they cannot be built: the light heads are used instead, with a warning, and
  ``aux_heads.spec["requested"]`` records it.
- ``"light"``: model-agnostic conv stacks (:class:`AuxiliaryHead`), the only form before; much
  cheaper (a 3x3 conv-BN-ReLU per halving of the resolution, width ``max_head_width`` at most).

``hsakd``'s ``heads`` defaults to the form of the ``teacher_heads`` it is given (their keys tell:
``heads.<i>.extractor.*`` authors, ``heads.<i>.body.*`` light), so head files trained before the
authors' form existed keep working, with light heads for the student too; naming a form that
differs from the file's is an error. Resuming a checkpoint whose heads are of the other form
fails with a message naming the option to set.
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

from mcmi.io import torch_save
from mcmi.losses.hsakd import NUM_ROTATIONS, aux_ce_loss, hsakd_loss, rotate_batch
from mcmi.methods.base import (
    Batch,
    Distiller,
    Method,
    StepOutput,
    register_method,
    require_features,
)
from mcmi.methods.hsakd_heads import HeadsUnavailable, HSAKDHeads, build_authors_heads
from mcmi.methods.modules import make_config, spatial_sizes
from mcmi.models.base import FeatureModel, Features, probe_features

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


def _heads_part(state: Mapping[str, Any]) -> dict[str, Any]:
    return {k[len(HEADS_PREFIX):]: v for k, v in state.items()
            if isinstance(k, str) and k.startswith(HEADS_PREFIX)}


@dataclass
class HSAKDTeacherConfig:
    """Teacher-side HSAKD: cross-entropy of every head against the joint labels (weight 1 each,
    the authors' ``train_teacher_cifar.py``); with an unfrozen backbone, plus the backbone's CE on
    the unrotated images. ``heads``: ``"authors"`` (the authors' heads, default) or ``"light"``
    (see the module docstring). ``max_head_width`` caps the light heads' width (e.g. MobileNetV2's
    1280)."""

    freeze_backbone: bool = True
    aux_weight: float = 1.0
    ce_weight: float = 1.0
    max_head_width: int = 512
    heads: str = "authors"


@register_method("hsakd_teacher")
class HSAKDTeacher(Method):
    """HSAKD teacher step (Yang et al., IJCAI 2021): trains auxiliary heads on a teacher with 4-fold
    rotated inputs and joint (class x rotation) labels; see the module docstring.

    Inputs are rotated 4-fold inside :meth:`forward`, so a batch of N images costs 4N forwards;
    the returned logits are those of the N unrotated images.
    """

    def __init__(
        self, model: FeatureModel, image_shape: tuple[int, ...] = (3, 32, 32), **options
    ) -> None:
        require_features(self, model, "model")
        super().__init__(model)
        self.cfg = make_config(HSAKDTeacherConfig, options, "hsakd_teacher")
        self.aux_heads = build_aux_heads(
            model, image_shape, self.cfg.max_head_width, self.cfg.heads
        )
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
        check_heads_form(_heads_part(state_dict), self.aux_heads, "the checkpoint",
                         "method_args.heads")
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def heads_state_dict(self) -> dict[str, Tensor]:
        """The heads' weights, keys prefixed ``aux_heads.`` (read by :func:`load_heads_state`)."""
        return {HEADS_PREFIX + k: v.detach().cpu() for k, v in self.aux_heads.state_dict().items()}

    def save_heads(self, path: str | os.PathLike) -> None:
        """Write :meth:`heads_state_dict` with ``torch.save``, atomically (loads with
        ``weights_only=True``)."""
        torch_save(path, self.heads_state_dict())


class TeacherWithHeads(FeatureModel):
    """A teacher plus its trained HSAKD (Yang et al., 2021) heads, frozen together.

    Both are then "the teacher" for the :class:`~mcmi.methods.base.Distiller` machinery (eval
    mode, no gradients, not checkpointed). ``forward_features`` is the backbone's;
    :meth:`aux_logits` runs the heads."""

    def __init__(self, backbone: FeatureModel, heads: HSAKDHeads) -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = heads
        self.stage_channels = list(backbone.stage_channels)
        self.num_features = backbone.num_features
        self.num_classes = backbone.num_classes

    @property
    def classifier(self) -> nn.Module:  # type: ignore[override]
        return self.backbone.classifier

    def forward_features(self, x: Tensor) -> Features:
        return self.backbone.forward_features(x)

    def aux_logits(self, feats: Features) -> list[Tensor]:
        return self.heads(self.heads.select(feats.stages))


@dataclass
class HSAKDConfig:
    """Student-side HSAKD, the authors' ``train_student_cifar.py``: CE on the unrotated images
    (weight 1) + the KL terms of :func:`~mcmi.losses.hsakd.hsakd_loss` at T = 3 with weight 1
    (the MCMI paper's A.8.2: gamma = 1). ``heads``: the form of the student's heads and of the
    teacher's rebuilt ones, ``"authors"`` or ``"light"``; None (default): the form the
    ``teacher_heads`` were saved in (see the module docstring)."""

    ce_weight: float = 1.0
    hsakd_weight: float = 1.0
    temperature: float = 3.0
    max_head_width: int = 512
    heads: str | None = None


@register_method("hsakd")
class HSAKD(Distiller):
    """HSAKD student distiller (Yang et al., IJCAI 2021).

    Loss: ``ce_weight CE(s(x), y) + hsakd_weight [sum_l T^2 KL(q^t_l || q^s_l) +
    T^2 KL(p^t || p^s)]`` over the 4-fold rotated batch. The student gets trainable heads
    (``self.aux_heads``); the teacher's trained heads come from ``teacher_heads`` (see the
    module docstring) and stay frozen inside ``self.teacher`` (a :class:`TeacherWithHeads`).
    Returned logits: the student's on the N unrotated images."""

    def __init__(
        self,
        student: FeatureModel,
        teacher: FeatureModel,
        teacher_heads: Any = None,
        image_shape: tuple[int, ...] = (3, 32, 32),
        **weights,
    ) -> None:
        cfg = make_config(HSAKDConfig, weights, "hsakd")
        require_features("HSAKD", student, "student")
        require_features("HSAKD", teacher, "teacher")
        if teacher_heads is None:
            raise ValueError(
                "HSAKD needs the teacher's trained auxiliary heads: train them with the "
                "'hsakd_teacher' method and pass teacher_heads=<checkpoint path or state dict>"
            )
        if cfg.heads is not None and cfg.heads not in HEAD_FORMS:
            raise ValueError(f"hsakd: heads must be one of {list(HEAD_FORMS)} or None, got {cfg.heads!r}")
        state = load_heads_state(teacher_heads)
        saved = heads_form_of(state)
        form = cfg.heads or saved or "authors"
        if cfg.heads is not None and saved is not None and saved != cfg.heads:
            raise ValueError(
                f"hsakd: heads={cfg.heads!r} but teacher_heads hold heads of the {saved!r} form; "
                f"pass heads={saved!r} (or leave it unset), or train {cfg.heads!r} heads with "
                "'hsakd_teacher'"
            )
        heads = build_aux_heads(teacher, image_shape, cfg.max_head_width, form)
        check_heads_form(state, heads, "teacher_heads", "heads")
        try:
            heads.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ValueError(
                f"teacher_heads do not fit this teacher's HSAKD heads: {err}"
            ) from None
        super().__init__(student, TeacherWithHeads(teacher, heads))
        self.cfg = cfg
        self.heads_form = form
        self.aux_heads = build_aux_heads(student, image_shape, cfg.max_head_width, form)
        if len(self.aux_heads.heads) != len(heads.heads):
            raise ValueError(
                "HSAKD pairs heads one to one: student has "
                f"{len(self.aux_heads.heads)} stages after "
                f"the stem, teacher {len(heads.heads)}"
            )

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        check_heads_form(_heads_part(state_dict), self.aux_heads, "the checkpoint",
                         "method_args.heads")
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def forward(self, batch: Batch, epoch: int = 0) -> StepOutput:
        cfg = self.cfg
        x, _ = rotate_batch(batch["image"])
        fs = self.student.forward_features(x)
        s_aux = self.aux_heads(self.aux_heads.select(fs.stages))
        with torch.no_grad():
            ft = self.teacher_forward(x)
            t_aux = self.teacher.aux_logits(ft)
        logits = fs.logits[0::NUM_ROTATIONS]
        return StepOutput(
            logits,
            {
                "ce": cfg.ce_weight * F.cross_entropy(logits, batch["label"]),
                "hsakd": cfg.hsakd_weight
                * hsakd_loss(fs.logits, ft.logits, s_aux, t_aux, cfg.temperature),
            },
        )

"""HSAKD (Yang et al., "Hierarchical Self-supervised Augmented Knowledge Distillation", IJCAI
2021): auxiliary heads after every stage classify the joint (class x rotation) label of
4-fold rotated inputs; the student mimics the teacher's heads and final classifier.

Two steps, two methods:

1. ``hsakd_teacher`` (:class:`~mcmi.methods.hsakd_teacher.HSAKDTeacher`, with the light heads and
   the reading of head files in :mod:`mcmi.methods.hsakd_teacher`) trains the teacher's auxiliary
   heads. By default the
   teacher backbone (e.g. an MCMI teacher) is frozen, as in the authors' "pre-trained backbone"
   mode (``train_teacher_cifar.py --freezed``; their recipe: 100 epochs, lr 0.05 decayed x0.1 at
   30/60/90, batch 64, SGD). ``freeze_backbone=False`` trains backbone and heads jointly.
2. ``hsakd`` (:class:`HSAKD`) distils into a student that gets heads of its own. Its
   ``teacher_prep`` tells experiment grids to run step 1 on each teacher first.

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

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mcmi.config import FieldError
from mcmi.losses.hsakd import NUM_ROTATIONS, hsakd_loss, rotate_batch
from mcmi.methods.base import Batch, Distiller, StepOutput, register_method, require_features
from mcmi.methods.hsakd_heads import HSAKDHeads
from mcmi.methods.hsakd_teacher import (
    HEAD_FORMS,
    HEADS_PREFIX,
    AuxiliaryHead,
    AuxiliaryHeads,
    HSAKDTeacher,
    HSAKDTeacherConfig,
    build_aux_heads,
    check_heads_form,
    heads_form_of,
    heads_part,
    light_heads,
    load_heads_state,
)
from mcmi.methods.metadata import FromModels, TeacherPrep
from mcmi.models.base import FeatureModel, Features


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
    ``teacher_heads`` were saved in (see the module docstring). ``teacher_heads``: the teacher's
    trained heads (required; the module docstring lists what it may be; a grid passes the
    ``hsakd_teacher`` run's checkpoint). ``image_shape``: the input's shape, for the probe forward
    that sizes the heads (the training run passes its data set's)."""

    ce_weight: float = 1.0
    hsakd_weight: float = 1.0
    temperature: float = 3.0
    max_head_width: int = 512
    heads: str | None = None
    teacher_heads: Any = None
    image_shape: tuple[int, ...] = (3, 32, 32)

    def __post_init__(self) -> None:
        if self.heads is not None and self.heads not in HEAD_FORMS:
            raise FieldError("heads", f"must be one of {list(HEAD_FORMS)} or None, got {self.heads!r}")


def _light_teacher_heads(student: FeatureModel, teacher: FeatureModel) -> dict[str, Tensor]:
    """Untrained light heads of ``teacher``: enough for a fast test instance of HSAKD."""
    return HSAKDTeacher(teacher, heads="light").heads_state_dict()


@register_method("hsakd")
class HSAKD(Distiller):
    """HSAKD student distiller (Yang et al., IJCAI 2021); options: :class:`HSAKDConfig`.

    Loss: ``ce_weight CE(s(x), y) + hsakd_weight [sum_l T^2 KL(q^t_l || q^s_l) +
    T^2 KL(p^t || p^s)]`` over the 4-fold rotated batch. The student gets trainable heads
    (``self.aux_heads``); the teacher's trained heads come from ``teacher_heads`` (see the
    module docstring) and stay frozen inside ``self.teacher`` (a :class:`TeacherWithHeads`).
    Returned logits: the student's on the N unrotated images."""

    options = HSAKDConfig
    display_name = "HSAKD"
    #: each teacher first gets its heads trained by ``hsakd_teacher``; the grid passes that run's
    #: checkpoint as ``teacher_heads`` (the grid's ``heads_recipe`` sets the run's recipe)
    teacher_prep = TeacherPrep(method="hsakd_teacher", arg="teacher_heads", recipe_field="heads_recipe")
    test_options = {"teacher_heads": FromModels(_light_teacher_heads)}

    def __init__(self, student: FeatureModel, teacher: FeatureModel, **options) -> None:
        cfg = self.make_options(options)  # before the Distiller: the teacher is wrapped with its heads
        require_features("HSAKD", student, "student")
        require_features("HSAKD", teacher, "teacher")
        if cfg.teacher_heads is None:
            raise ValueError(
                "HSAKD needs the teacher's trained auxiliary heads: train them with the "
                "'hsakd_teacher' method and pass teacher_heads=<checkpoint path or state dict>"
            )
        state = load_heads_state(cfg.teacher_heads)
        saved = heads_form_of(state)
        form = cfg.heads or saved or "authors"
        if cfg.heads is not None and saved is not None and saved != cfg.heads:
            raise ValueError(
                f"hsakd: heads={cfg.heads!r} but teacher_heads hold heads of the {saved!r} form; "
                f"pass heads={saved!r} (or leave it unset), or train {cfg.heads!r} heads with "
                "'hsakd_teacher'"
            )
        heads = build_aux_heads(teacher, cfg.image_shape, cfg.max_head_width, form)
        check_heads_form(state, heads, "teacher_heads", "heads")
        try:
            heads.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ValueError(
                f"teacher_heads do not fit this teacher's HSAKD heads: {err}"
            ) from None
        super().__init__(student, TeacherWithHeads(teacher, heads), **options)
        self.heads_form = form
        self.aux_heads = build_aux_heads(student, cfg.image_shape, cfg.max_head_width, form)
        if len(self.aux_heads.heads) != len(heads.heads):
            raise ValueError(
                "HSAKD pairs heads one to one: student has "
                f"{len(self.aux_heads.heads)} stages after "
                f"the stem, teacher {len(heads.heads)}"
            )

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        check_heads_form(heads_part(state_dict), self.aux_heads, "the checkpoint",
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


__all__ = [
    "HEADS_PREFIX", "HEAD_FORMS", "HSAKD", "AuxiliaryHead", "AuxiliaryHeads", "HSAKDConfig", "HSAKDTeacher",
    "HSAKDTeacherConfig", "TeacherWithHeads", "build_aux_heads", "check_heads_form", "heads_form_of", "light_heads",
    "load_heads_state",
]

"""HSAKD's auxiliary heads in the authors' form (Yang et al., IJCAI 2021; github.com/winycg/HSAKD,
``models/*.py``: copies of the backbone's later stages) and the light form, as the two methods
use them: shapes, parameter counts computed here from the backbone's own stage modules, one
training step of each method with each form, and old head files / checkpoints / options."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mcmi.methods import METHODS
from mcmi.methods.hsakd import HSAKD, AuxiliaryHeads, HSAKDTeacher, build_aux_heads, heads_form_of
from mcmi.methods.hsakd_heads import AuthorsHeads, HeadsUnavailable, build_authors_heads, match_maps
from mcmi.models import create_model
from mcmi.models.base import Features, probe_features
from mcmi.models.cifar.mobilenetv2 import CifarMobileNetV2
from mcmi.models.fold import fold_batchnorm

K = 5  # classes
OUT = 4 * K  # joint class x rotation labels


def count(*modules: nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def fc(c: int) -> int:
    return c * OUT + OUT


def bn(c: int) -> int:
    return 2 * c


def heads_of(name: str, image_shape=(3, 32, 32)):
    torch.manual_seed(0)
    model = create_model(name, num_classes=K)
    return model, build_authors_heads(model, image_shape)


# ----------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize(
    "name, indices",
    [("resnet8", [1, 2, 3]), ("wrn_16_1", [1, 2, 3]), ("vgg8", [0, 1, 2, 4]),
     ("mobilenetv2_x0_1", [1, 2, 3, 4]), ("shufflenetv1", [1, 2, 3]), ("shufflenetv2", [1, 2, 3])],
)
def test_authors_heads_read_the_authors_maps_and_output_joint_logits(name, indices):
    model, heads = heads_of(name)
    assert isinstance(heads, AuthorsHeads) and heads.spec["form"] == "authors"
    # the authors' feature lists: ResNets/WRN/ShuffleNets their three stage outputs, MobileNetV2
    # RepDistiller's four points, VGG block 0, 1, 2 and 4 (block 3 has no head)
    assert heads.map_indices == indices
    feats = model.forward_features(torch.randn(3, 3, 32, 32))
    out = heads(heads.select(feats.stages))
    assert [tuple(o.shape) for o in out] == [(3, OUT)] * len(indices)


def test_vgg_heads_at_64_pixels_follow_the_backbone_s_extra_pooling():
    model, heads = heads_of("vgg8", (3, 64, 64))
    assert heads.map_indices == [0, 1, 2, 4]
    feats = model.forward_features(torch.randn(2, 3, 64, 64))
    assert [tuple(o.shape) for o in heads(heads.select(feats.stages))] == [(2, OUT)] * 4


# ------------------------------------------------------------------ parameter counts, by hand
def basic_block(c: int) -> int:  # BasicBlock(c, c, stride 1): two 3x3 convs and BNs, no shortcut
    return 2 * (9 * c * c + bn(c))


def test_resnet_heads_are_the_later_stages_and_a_stride_1_last_stage():
    model, heads = heads_of("resnet20")
    l2, l3 = model.layer2, model.layer3
    c = 64
    last = count(l3) - count(l3[0]) + basic_block(c)
    assert [count(h) for h in heads.heads] == [count(l2, l3) + fc(c), count(l3) + fc(c), last + fc(c)]
    # the copies have the backbone's layout (same keys and shapes), with weights of their own
    first = heads.heads[0].extractor
    for copy, stage in zip(first, (l2, l3)):
        assert {k: v.shape for k, v in copy.state_dict().items()} == {
            k: v.shape for k, v in stage.state_dict().items()}
    assert not {id(p) for p in heads.parameters()} & {id(p) for p in model.parameters()}
    assert not torch.equal(first[0][0].conv1.weight, l2[0].conv1.weight)
    for h in heads.heads:  # the authors' init of their CIFAR ResNet heads
        assert torch.all(h.fc.bias == 0)


def test_wrn_heads_end_with_the_backbone_s_bn_relu():
    model, heads = heads_of("wrn_16_1")
    b2, b3, c = model.block2, model.block3, model.num_features
    wide_same = bn(c) + 9 * c * c + bn(c) + 9 * c * c  # WideBlock(c, c): no 1x1 shortcut
    last = count(b3) - count(b3.layer[0]) + wide_same
    tail = bn(c)
    assert [count(h) for h in heads.heads] == [
        count(b2, b3) + tail + fc(c), count(b3) + tail + fc(c), last + tail + fc(c)]


def test_vgg_heads_copy_blocks_and_restart_block_3_from_512_channels():
    model, heads = heads_of("vgg8")
    b1, b2, b3, b4 = model.block1, model.block2, model.block3, model.block4
    w3 = b3[0].out_channels
    # block 3 again, its first conv reading block 4's 512 channels instead of block 2's 256
    b3_again = count(b3) - count(b3[0]) + 9 * 512 * w3 + w3  # b3[0]: its first conv (with bias)
    c = 512
    assert [count(h) for h in heads.heads] == [
        count(b1, b2, b3, b4) + fc(c), count(b2, b3, b4) + fc(c), count(b3, b4) + fc(c),
        b3_again + count(b4) + fc(c)]


def inverted_residual(c_in: int, c_out: int, t: int) -> int:
    h = c_in * t
    return c_in * h + bn(h) + 9 * h + bn(h) + h * c_out + bn(c_out)


def test_mobilenetv2_heads_copy_groups_and_the_1x1_head():
    model, heads = heads_of("mobilenetv2")
    g = model.blocks
    tail = count(model.conv2)
    c = model.num_features  # 1280
    g5_again = count(g[5]) - count(g[5][0]) + inverted_residual(160, 80, 6)
    assert [count(h) for h in heads.heads] == [
        count(*g[2:7]) + tail + fc(c), count(*g[3:7]) + tail + fc(c), count(g[5], g[6]) + tail + fc(c),
        g5_again + count(g[6]) + tail + fc(c)]
    for h in heads.heads:  # the authors' MobileNetV2 head init: N(0, 0.01^2), zero bias
        assert torch.all(h.fc.bias == 0) and 0.005 < float(h.fc.weight.detach().std()) < 0.015


def test_shufflenet_heads_restart_the_last_stage_at_stride_1():
    model, heads = heads_of("shufflenetv2")
    l2, l3, tail = model.layer2, model.layer3, count(model.conv2, model.bn2)
    c, m = 464, 232
    down_same = (9 * c + bn(c) + c * m + bn(m)) + (c * m + bn(m) + 9 * m + bn(m) + m * m + bn(m))
    last = count(l3) - count(l3[0]) + down_same
    f = fc(model.num_features)
    assert [count(h) for h in heads.heads] == [count(l2, l3) + tail + f, count(l3) + tail + f, last + tail + f]

    model, heads = heads_of("shufflenetv1")
    l2, l3, c, mid, g = model.layer2, model.layer3, 960, 240, 3
    unit_same = c * mid // g + bn(mid) + 9 * mid + bn(mid) + mid * c // g + bn(c)
    last = count(l3) - count(l3[0]) + unit_same
    assert [count(h) for h in heads.heads] == [count(l2, l3) + fc(c), count(l3) + fc(c), last + fc(c)]


def test_folded_teacher_gets_the_same_heads():
    model = create_model("resnet8", num_classes=K).eval()
    a = build_authors_heads(model)
    b = build_authors_heads(fold_batchnorm(model))
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}


# ------------------------------------------------------- which maps, for any exposed layout
def test_maps_are_matched_in_order_and_runs_resolve_to_their_last_map():
    assert match_maps([(16, 32, 32), (32, 16, 16)], [(16, 32, 32), (16, 32, 32), (32, 16, 16)]) == [1, 2]
    assert match_maps([(64, 32, 32), (512, 4, 4)], [(64, 32, 32), (512, 4, 4), (512, 4, 4)]) == [0, 2]
    with pytest.raises(HeadsUnavailable, match=r"\(160, 2, 2\)"):
        match_maps([(48, 4, 4), (160, 2, 2)], [(48, 4, 4), (1280, 2, 2)])


class HeadMapMobileNetV2(CifarMobileNetV2):
    """MobileNetV2 exposing its 1280-channel 1x1 head as the last stage (an older mcmi layout)."""

    def forward_features(self, x):
        f = super().forward_features(x)
        head = self.conv2(f.stages[-1])
        return Features(f.logits, f.stages[:-1] + [head], f.preact[:-1] + [head], f.pooled)


def test_a_model_without_the_authors_maps_falls_back_to_light_heads_with_a_warning():
    model = HeadMapMobileNetV2(K, width=0.1)
    with pytest.raises(HeadsUnavailable):
        build_authors_heads(model)
    with pytest.warns(UserWarning, match="light heads"):
        heads = build_aux_heads(model)
    assert isinstance(heads, AuxiliaryHeads) and heads.spec["requested"] == "authors"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert isinstance(build_aux_heads(model, form="light"), AuxiliaryHeads)
    with pytest.raises(ValueError, match="heads must be one of"):
        build_aux_heads(model, form="auhtors")


# ------------------------------------------------------------------ one step of each method
def batch(n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.randn(n, 3, 32, 32, generator=g), "label": torch.arange(n) % K,
            "index": torch.arange(n)}


def step(method, b):
    params = method.trainable_parameters()
    before = [p.detach().clone() for p in params]
    out = method(b)
    assert all(torch.isfinite(v) for v in out.losses.values())
    opt = torch.optim.SGD(params, lr=0.1)
    opt.zero_grad()
    out.total.backward()
    opt.step()
    assert any(not torch.equal(p, q) for p, q in zip(params, before))
    return out


@pytest.mark.parametrize("form", ["authors", "light"])
def test_hsakd_teacher_and_student_train_one_step_with_each_form(form):
    torch.manual_seed(0)
    teacher, student = create_model("resnet14", num_classes=K), create_model("resnet8", num_classes=K)
    ref = {k: v.clone() for k, v in teacher.state_dict().items()}
    prep = METHODS.build("hsakd_teacher", teacher, heads=form).train()
    assert prep.aux_heads.form == form
    out = step(prep, batch())
    assert set(out.losses) == {"aux_ce"} and out.logits.shape == (2, K)
    assert all(torch.equal(v, ref[k]) for k, v in teacher.state_dict().items())  # frozen backbone
    keys = prep.heads_state_dict()
    assert heads_form_of(keys) == form
    student_method = METHODS.build("hsakd", student, teacher, teacher_heads=keys).train()
    assert student_method.heads_form == form and student_method.aux_heads.form == form
    out = step(student_method, batch(seed=1))
    assert set(out.losses) == {"ce", "hsakd"}
    for k, v in prep.aux_heads.state_dict().items():  # the teacher's heads are loaded, frozen
        assert torch.equal(student_method.teacher.heads.state_dict()[k], v)


def test_unfrozen_teacher_with_authors_heads_trains_backbone_and_heads():
    torch.manual_seed(0)
    prep = HSAKDTeacher(create_model("resnet8", num_classes=K), freeze_backbone=False).train()
    out = step(prep, batch())
    assert set(out.losses) == {"aux_ce", "ce"}
    assert all(p.requires_grad for p in prep.model.parameters())


# --------------------------------------------------------- old head files, checkpoints, options
def test_old_light_head_files_and_checkpoints_load_or_fail_clearly(tmp_path):
    torch.manual_seed(0)
    teacher, student = create_model("resnet8", num_classes=K), create_model("resnet8", num_classes=K)
    old_prep = HSAKDTeacher(teacher, heads="light")  # what every head file was before
    path = tmp_path / "heads.pt"
    old_prep.save_heads(path)
    old_student = HSAKD(student, teacher, teacher_heads=path)  # default: the file's form
    assert old_student.heads_form == "light"
    resumed = HSAKD(create_model("resnet8", num_classes=K), teacher, teacher_heads=path)
    resumed.load_state_dict(old_student.state_dict())  # an old student checkpoint resumes
    with pytest.raises(ValueError, match=r"heads='light'"):
        HSAKD(student, teacher, teacher_heads=path, heads="authors")
    # an old hsakd_teacher checkpoint into the new default (authors) method: a clear message
    new_prep = HSAKDTeacher(teacher)
    with pytest.raises(ValueError, match=r"method_args\.heads='light'"):
        new_prep.load_state_dict(old_prep.state_dict())
    HSAKDTeacher(teacher, heads="light").load_state_dict(old_prep.state_dict())
    # authors' heads of another teacher do not fit
    other = HSAKDTeacher(create_model("resnet14", num_classes=K)).heads_state_dict()
    with pytest.raises(ValueError, match="do not fit"):
        HSAKD(student, teacher, teacher_heads=other)
    with pytest.raises(ValueError, match="heads must be one of"):
        HSAKD(student, teacher, teacher_heads=path, heads="stage")
    with pytest.raises(TypeError, match="unknown option"):
        HSAKDTeacher(teacher, head="light")
    assert HSAKDTeacher(teacher, heads="light", max_head_width=8).aux_heads.spec["width"] == 8


def test_student_heads_pair_with_the_teacher_s_one_to_one():
    torch.manual_seed(0)
    teacher = create_model("vgg8", num_classes=K)  # 4 heads
    heads = HSAKDTeacher(teacher).heads_state_dict()
    with pytest.raises(ValueError, match="one to one"):
        HSAKD(create_model("resnet8", num_classes=K), teacher, teacher_heads=heads)  # 3 heads


def test_logits_are_those_of_the_unrotated_images_with_authors_heads():
    torch.manual_seed(0)
    teacher = create_model("resnet8", num_classes=K)
    b = batch(3)
    for method in (HSAKD(create_model("resnet8", num_classes=K), teacher, teacher_heads=HSAKDTeacher(teacher)),
                   HSAKDTeacher(teacher)):
        method.eval()
        with torch.no_grad():
            out = method(b)
            expected = method.model(b["image"])
        assert torch.allclose(out.logits, expected, atol=1e-5)
        if "ce" in out.losses:
            assert float(out.losses["ce"]) == pytest.approx(float(F.cross_entropy(expected, b["label"])), rel=1e-5)
    assert probe_features(teacher, (3, 32, 32)).logits.shape == (2, K)

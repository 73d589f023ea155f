"""Any model: plain ``nn.Module`` s in every method, feature methods through ``mcmi.wrap``'s hooks.

The plain CNNs below know nothing of mcmi (no FeatureModel, no forward_features)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import mcmi
from mcmi.data.batch import BatchError
from mcmi.methods import KD, MCMI, METHODS, Distiller
from mcmi.methods.base import resolve_test_options
from mcmi.methods.crd import CRD
from mcmi.methods.metadata import FromModels
from mcmi.models import create_model
from mcmi.models.base import FeatureModel
from mcmi.models.wrap import HookedModel, LogitsModel

NUM_CLASSES = 5
BATCH = 8
STAGES = ["stem", "layer1", "layer2", "layer3"]


def block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    )


class PlainCNN(nn.Module):
    """A user's CNN: stem and three stages (32, 32, 16, 8 px for 32x32 inputs), pool, fc."""

    def __init__(self, widths=(4, 4, 8, 8), num_classes=NUM_CLASSES):
        super().__init__()
        self.stem = block(3, widths[0], 1)
        self.layer1 = block(widths[0], widths[1], 1)
        self.layer2 = block(widths[1], widths[2], 2)
        self.layer3 = block(widths[2], widths[3], 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[3], num_classes)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def make_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(BATCH, 3, 32, 32, generator=g)
    return x, torch.arange(BATCH) % NUM_CLASSES, torch.arange(BATCH)


def distiller_names():
    return sorted(n for n in METHODS.names()
                  if isinstance(METHODS.get(n), type) and issubclass(METHODS.get(n), Distiller))


def one_line_error(excinfo) -> str:
    text = str(excinfo.value)
    assert "\n" not in text, text
    return text


def buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.named_buffers()}


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k, v in a.items():
        assert v.dtype == b[k].dtype and torch.equal(v, b[k]), k


def trained_bn(model: nn.Module) -> nn.Module:
    """Move the batch-norm running statistics away from their initial values."""
    model.train()
    with torch.no_grad():
        for s in range(3):
            model(make_batch(10 + s)[0])
    return model


# ------------------------------------------------------------------------ every method, any model
@pytest.mark.parametrize("name", distiller_names())
def test_every_distiller_trains_a_step_on_hook_wrapped_plain_modules(name):
    torch.manual_seed(0)
    student = mcmi.wrap(PlainCNN((4, 4, 8, 8)), stages=STAGES, classifier="fc")
    teacher = mcmi.wrap(trained_bn(PlainCNN((6, 6, 12, 16))), stages=STAGES, classifier="fc")
    assert isinstance(student, HookedModel) and isinstance(teacher, HookedModel)
    kwargs = resolve_test_options(METHODS.get(name), student, teacher)
    teacher_before = buffers(teacher)
    method = METHODS.build(name, student, teacher, **kwargs)
    batch = make_batch()
    method.prepare([batch])  # (x, y, index) tuples
    method.train()
    out = method(batch, epoch=100)
    assert out.logits.shape == (BATCH, NUM_CLASSES)
    assert out.losses and all(v.dim() == 0 and torch.isfinite(v) for v in out.losses.values())
    out.total.backward()
    grads = [p.grad for p in student.module.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads), name
    assert any(g.abs().sum() > 0 for g in grads), name
    assert all(p.grad is None for p in teacher.parameters())
    assert not teacher.training
    assert_same(buffers(teacher), teacher_before)  # the teacher's BN statistics never move
    for m in (student.module, teacher.module):  # hooks live for one forward only
        assert all(not mod._forward_hooks and not mod._forward_pre_hooks for mod in m.modules())


@pytest.mark.parametrize("name", ["kd", "dkd"])
def test_logit_distillers_take_plain_modules_as_they_are(name):
    torch.manual_seed(0)
    student, teacher = PlainCNN(), PlainCNN((6, 6, 12, 16))
    method = METHODS.build(name, student, teacher).train()
    assert isinstance(method.teacher, LogitsModel) and method.student is student
    out = method(make_batch()[:2])  # (x, y)
    out.total.backward()
    assert all(p.grad is not None for p in student.parameters())
    assert all(p.grad is None for p in teacher.parameters())
    # the same losses as with the teacher wrapped by hooks
    hooked = METHODS.build(name, student, mcmi.wrap(teacher, stages=STAGES)).train()
    with torch.no_grad():
        a, b = method(make_batch()[:2]), hooked(make_batch()[:2])
    for k in a.losses:
        torch.testing.assert_close(a.losses[k], b.losses[k], rtol=0, atol=0)
    assert not any(k.startswith("teacher.") for k in method.state_dict())


@pytest.mark.parametrize("name", [n for n in distiller_names() if METHODS.get(n).teacher_signal == "features"])
def test_feature_distillers_on_plain_modules_say_to_wrap(name):
    kwargs = {k: v for k, v in METHODS.get(name).test_options.items() if not isinstance(v, FromModels)}
    with pytest.raises(TypeError) as err:
        METHODS.build(name, PlainCNN(), PlainCNN(), **kwargs)
    text = one_line_error(err)
    assert "mcmi.wrap(model, stages=" in text and "PlainCNN" in text


def test_teacher_objectives_on_plain_and_wrapped_modules():
    torch.manual_seed(0)
    x, y, _ = make_batch()
    model = PlainCNN()
    for method in (METHODS.build("mll", model), METHODS.build("mcmi", model)):
        method.prepare([(x, y)])
        out = method((x, y))
        assert torch.isfinite(out.total)
        out.total.backward()
    assert METHODS.build("mcmi", model).centroids.shape == (NUM_CLASSES, NUM_CLASSES)
    target = torch.softmax(torch.randn(BATCH, NUM_CLASSES), 1)
    assert torch.isfinite(METHODS.build("soft_target", model)((x, target)).total)
    heads = METHODS.build("hsakd_teacher", mcmi.wrap(model, stages=STAGES)).train()
    out = heads((x, y))
    assert out.logits.shape == (BATCH, NUM_CLASSES) and torch.isfinite(out.total)
    with pytest.raises(TypeError, match="mcmi.wrap"):
        METHODS.build("hsakd_teacher", PlainCNN())


# ----------------------------------------------------------------------------------- the adapter
def test_wrapped_maps_equal_the_submodules_called_by_hand():
    torch.manual_seed(0)
    model = trained_bn(PlainCNN((4, 6, 8, 12)))
    wrapped = mcmi.wrap(model, stages=["layer1", "layer2", "layer3"], classifier="fc")
    assert wrapped.stage_channels == [6, 8, 12] and wrapped.num_features == 12
    assert wrapped.num_classes == NUM_CLASSES and wrapped.classifier is model.fc
    assert wrapped.stage_shapes == [(6, 32, 32), (8, 16, 16), (12, 8, 8)]
    x = make_batch(3)[0]
    for mode in (False, True):
        wrapped.train(mode)
        ref = copy.deepcopy(model)  # by hand, on a copy: train mode moves BN statistics
        with torch.no_grad():
            f = wrapped.forward_features(x)
            a = ref.layer1(ref.stem(x))
            b = ref.layer2(a)
            c = ref.layer3(b)
            pooled = ref.pool(c).flatten(1)
            logits = ref.fc(pooled)
        for got, want in zip(f.stages, [a, b, c]):
            assert torch.equal(got, want)
        assert len(f.stages) == 3 and [t.data_ptr() for t in f.preact] == [t.data_ptr() for t in f.stages]
        assert torch.equal(f.pooled, pooled) and torch.equal(f.logits, logits)
        assert torch.equal(wrapped(x), logits) or mode  # forward: the module's own logits
    # gradients flow through the tapped maps into the module
    wrapped.train()
    f = wrapped.forward_features(x)
    f.stages[0].pow(2).mean().backward()
    assert model.layer1[0].weight.grad.abs().sum() > 0 and model.fc.weight.grad is None


def test_wrap_dry_forward_leaves_the_model_state_untouched():
    torch.manual_seed(0)
    model = trained_bn(PlainCNN())
    model.layer2[1].eval()  # a mixed state: one batch norm frozen by the user
    before, modes = buffers(model), [m.training for m in model.modules()]
    rng = torch.get_rng_state()
    wrapped = mcmi.wrap(model, stages=STAGES)
    assert_same(buffers(model), before)
    assert [m.training for m in model.modules()] == modes
    assert torch.equal(torch.get_rng_state(), rng)
    assert wrapped.classifier_name == "fc"  # default: the last nn.Linear
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_wrap_of_a_feature_model_returns_it_unchanged():
    zoo = create_model("resnet8", num_classes=10)
    assert mcmi.wrap(zoo) is zoo
    wrapped = mcmi.wrap(PlainCNN(), stages=STAGES)
    assert mcmi.wrap(wrapped) is wrapped and mcmi.wrap(wrapped, stages=STAGES) is wrapped
    with pytest.warns(UserWarning, match="ignored"):
        assert mcmi.wrap(zoo, stages=["layer1"]) is zoo
    assert isinstance(wrapped, FeatureModel)


def test_wrap_takes_any_stage_rank_and_flattens_a_4d_classifier_input():
    class Mixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
            self.proj = nn.Linear(4, 6)
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 30 * 30, 3))

        def forward(self, x):
            h = self.body(x)
            self.proj(h.mean((2, 3)))  # a side branch that is tapped, not used
            return self.head(h)

    wrapped = mcmi.wrap(Mixed(), stages=["body", "proj"], classifier="head")
    assert wrapped.stage_channels == [4, 6] and wrapped.num_features == 4 * 30 * 30
    f = wrapped.forward_features(torch.randn(2, 3, 32, 32))
    assert f.pooled.shape == (2, 3600) and f.logits.shape == (2, 3)


# -------------------------------------------------------------------------------- bad inputs
def test_unknown_module_name_lists_the_nearest_ones():
    with pytest.raises(ValueError) as err:
        mcmi.wrap(PlainCNN(), stages=["layer1", "layr2"], classifier="fc")
    text = one_line_error(err)
    assert "'layr2'" in text and "'layer2'" in text and "PlainCNN" in text
    with pytest.raises(ValueError) as err:
        mcmi.wrap(PlainCNN(), stages=["layer1"], classifier="fcc")
    assert "'fcc'" in one_line_error(err) and "nearest: 'fc'" in str(err.value)
    with pytest.raises(ValueError, match="listed more than once"):
        mcmi.wrap(PlainCNN(), stages=["layer1", "layer1"])


def test_wrong_class_counts_are_one_line_errors_naming_both():
    with pytest.raises(ValueError) as err:
        mcmi.wrap(PlainCNN(), stages=STAGES, classifier="fc", num_classes=7)
    text = one_line_error(err)
    assert "num_classes=7" in text and f"{NUM_CLASSES} logits" in text
    with pytest.raises(ValueError) as err:
        KD(PlainCNN(num_classes=10), PlainCNN(num_classes=5))
    text = one_line_error(err)
    assert "number of classes" in text and "student 10" in text and "teacher 5" in text
    with pytest.raises(ValueError, match="student 10.*teacher 5"):
        METHODS.build("at", mcmi.wrap(PlainCNN(num_classes=10), stages=STAGES),
                      mcmi.wrap(PlainCNN(num_classes=5), stages=STAGES))
    with pytest.raises(ValueError) as err:  # a classifier that is not the final layer
        mcmi.wrap(PlainCNN(), stages=STAGES, classifier="layer3.0")
    assert "classifier 'layer3.0'" in one_line_error(err)
    with pytest.raises(ValueError) as err:
        MCMI(nn.Sequential(nn.Conv2d(3, 5, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()))
    assert "pass num_classes=" in one_line_error(err)
    with pytest.raises(ValueError, match="num_classes=4 but .* has 10 classes"):
        MCMI(create_model("resnet8", num_classes=10), num_classes=4)


def test_crd_without_indices_names_the_field_and_the_fix():
    from torch.utils.data import DataLoader, TensorDataset

    x, y, _ = make_batch()
    student = mcmi.wrap(PlainCNN(), stages=STAGES)
    teacher = mcmi.wrap(PlainCNN((6, 6, 12, 16)), stages=STAGES)
    crd = CRD(student, teacher, num_data=BATCH, num_negatives=4)
    with pytest.raises(BatchError) as err:
        crd.prepare(DataLoader(TensorDataset(x, y), batch_size=4))
    text = one_line_error(err)
    assert "'index'" in text and "(x, y, index)" in text and "CRD.prepare" in text
    crd.prepare(DataLoader(TensorDataset(x, y, torch.arange(BATCH)), batch_size=4))
    with pytest.raises(BatchError) as err:
        crd((x, y))
    assert "'index'" in one_line_error(err) and "CRD" in text
    assert torch.isfinite(crd.train()((x, y, torch.arange(BATCH))).total)

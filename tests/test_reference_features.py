"""The zoo against RepDistiller's own layout and feature lists (issue 14, "WRN stage features").

Weights are files in RepDistiller's checkpoint layout (``{'model': model.state_dict(), ...}``
under RepDistiller's key names), built by :mod:`reference_layouts`; loaded into the zoo through an
explicit key mapping, every model's ``forward_features`` must give RepDistiller's eval-mode
``forward(x, is_feat=True, preact=...)`` lists entry by entry (``stages == feats[:-1]``,
``pooled == feats[-1]``, ``preact == feats_pre[:-1]``), and every distiller must hand its loss
and modules the maps RepDistiller's ``train_student.py`` / ``helper/loops.py`` (and, for ReviewKD
and HSAKD, their authors' code) hand theirs.
"""
from __future__ import annotations

import functools

import pytest
import reference_layouts as R  # tests/ is on sys.path
import torch
from torch import Tensor

from mcmi.losses.hsakd import rotate_batch
from mcmi.methods import METHODS
from mcmi.methods.base import resolve_test_options
from mcmi.methods.hsakd import build_aux_heads
from mcmi.models import create_model, list_models
from mcmi.models.base import MODELS

NUM_CLASSES = 100
RTOL = 1e-4  # relative difference ||a - b|| / ||b|| allowed (float32, same operations)

#: checked in the default run: the issue's resnet56, wrn_40_2, resnet8x4 and at least one model
#: of every family and block type; the deeper/wider siblings run with ``-m slow``
FAST_ARCHS = {"resnet8", "resnet56", "resnet8x4", "wrn_16_1", "wrn_40_2", "vgg8", "vgg13",
              "mobilenetv2", "mobilenetv2_x0_1", "shufflenetv1", "shufflenetv2", "resnet18",
              "resnet50"}


def arch_params(archs):
    return [a if a in FAST_ARCHS else pytest.param(a, marks=pytest.mark.slow) for a in archs]


# ------------------------------------------------------------------------- layout <-> zoo
#: RepDistiller module paths renamed in the zoo (model files of both, see their docstrings):
#: the final layer is ``classifier`` everywhere; resnetv2's ``shortcut`` is ``downsample``.
RENAMES: dict[str, list[tuple[str, str]]] = {
    "resnet": [("fc.", "classifier.")],
    "wrn": [("fc.", "classifier.")],
    "vgg": [],
    "mobilenetv2": [("classifier.0.", "classifier.")],
    "shufflenetv1": [("linear.", "classifier.")],
    "shufflenetv2": [("linear.", "classifier.")],
    "resnetv2": [("linear.", "classifier.")],
}


def to_zoo_keys(arch: str, sd: dict[str, Tensor]) -> dict[str, Tensor]:
    fam = R.family(arch)
    out = {}
    for key, value in sd.items():
        new = key
        for old, mine in RENAMES[fam]:
            if new.startswith(old):
                new = mine + new[len(old):]
        if fam == "resnetv2":
            new = new.replace(".shortcut.", ".downsample.")
        assert new not in out, new
        out[new] = value
    return out


@functools.cache
def reference_file(arch: str, tmp_dir: str, seed: int = 0) -> str:
    """A RepDistiller teacher file (``{arch}_best.pth`` layout) written once per arch."""
    path = f"{tmp_dir}/{arch}_seed{seed}_best.pth"
    torch.save(R.repdistiller_checkpoint(R.repdistiller_state_dict(arch, NUM_CLASSES, seed)), path)
    return path


@pytest.fixture(scope="module")
def ref_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("repdistiller"))


def load_reference(arch: str, ref_dir: str, seed: int = 0):
    """(RepDistiller state dict as read back from its file, zoo model holding those weights)."""
    ckpt = torch.load(reference_file(arch, ref_dir, seed), map_location="cpu", weights_only=True)
    sd = ckpt["model"]
    model = create_model(arch, num_classes=NUM_CLASSES)
    model.load_state_dict(to_zoo_keys(arch, sd), strict=True)  # same key set and shapes
    return sd, model.eval()


def make_input(n: int = 2, seed: int = 0) -> Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def rel(a: Tensor, b: Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def assert_same(got: Tensor, want: Tensor, what: str) -> None:
    assert tuple(got.shape) == tuple(want.shape), f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    r = rel(got, want)
    assert r < RTOL, f"{what}: relative difference {r:.2e}"


def assert_same_list(got, want, what: str) -> None:
    got, want = list(got), list(want)
    assert len(got) == len(want), f"{what}: {len(got)} maps, the reference has {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        assert_same(g, w, f"{what}[{i}]")


# --------------------------------------------------------------------- models, entry by entry
@pytest.mark.parametrize("arch", arch_params(R.REFERENCE_ARCHS))
def test_forward_features_equal_repdistiller_feats(arch, ref_dir):
    sd, model = load_reference(arch, ref_dir)
    x = make_input()
    feats, logits = R.repdistiller_forward(arch, sd, x, preact=False)
    feats_pre, logits_pre = R.repdistiller_forward(arch, sd, x, preact=True)
    torch.testing.assert_close(logits, logits_pre, rtol=0, atol=0)
    with torch.no_grad():
        f = model.forward_features(x)
    assert_same_list(f.stages, feats[:-1], f"{arch} stages vs feats[:-1]")
    assert_same(f.pooled, feats[-1], f"{arch} pooled vs feats[-1]")
    assert_same_list(f.preact, feats_pre[:-1], f"{arch} preact vs feats(preact=True)[:-1]")
    assert_same(f.pooled, feats_pre[-1], f"{arch} pooled vs feats(preact=True)[-1]")
    assert_same(f.logits, logits, f"{arch} logits")
    assert [m.shape[1] for m in f.stages] == model.stage_channels
    assert f.pooled.shape[1] == model.num_features


@pytest.mark.parametrize("kind", ["best", "epoch", "last"])
def test_reference_checkpoint_kinds_hold_the_state_dict(kind):
    sd = R.repdistiller_state_dict("resnet8", 10)
    ckpt = R.repdistiller_checkpoint(sd, kind)
    assert ckpt["model"] is sd and "optimizer" in ckpt
    assert ("opt" in ckpt) == (kind == "last") and ("epoch" in ckpt) == (kind != "last")


def test_reference_state_dict_is_seeded_and_sensible():
    a = R.repdistiller_state_dict("wrn_16_1", 10, seed=3)
    b = R.repdistiller_state_dict("wrn_16_1", 10, seed=3)
    c = R.repdistiller_state_dict("wrn_16_1", 10, seed=4)
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv1.weight"], c["conv1.weight"])
    var = [v for k, v in a.items() if k.endswith("running_var")]
    assert var and all(bool((v > 0).all()) for v in var)
    assert all(v.dtype == torch.long and v.dim() == 0 for k, v in a.items() if k.endswith("num_batches_tracked"))
    with pytest.raises(KeyError):
        R.repdistiller_state_dict("resnet9", 10)


# ------------------------------------------------------------------ stage channels of the zoo
#: ``stage_channels`` (channels of RepDistiller's ``feats[:-1]``, stem first) and
#: ``num_features`` (``feats[-1]``) of every zoo model, read from the reference code:
EXPECTED_CHANNELS: dict[str, tuple[list[int], int]] = {
    # RepDistiller models/resnet.py: ResNet(depth, num_filters), f0..f3 = num_filters
    **{f"resnet{d}": ([16, 16, 32, 64], 64) for d in (8, 14, 20, 32, 44, 56, 110)},
    "resnet8x4": ([32, 64, 128, 256], 256),
    "resnet32x4": ([32, 64, 128, 256], 256),
    # RepDistiller models/resnetv2.py: f0 = 64-channel stem, f1..f4 = 64..512 x expansion
    "resnet18": ([64, 64, 128, 256, 512], 512),
    "resnet50": ([64, 256, 512, 1024, 2048], 2048),
    # RepDistiller models/wrn.py: nChannels = [16, 16k, 32k, 64k]; f1..f3 the raw group sums
    "wrn_16_1": ([16, 16, 32, 64], 64),
    "wrn_16_2": ([16, 32, 64, 128], 128),
    "wrn_40_1": ([16, 16, 32, 64], 64),
    "wrn_40_2": ([16, 32, 64, 128], 128),
    # RepDistiller models/vgg.py: f0..f4 = last width of cfg blocks 0..4; pooled 512
    **{f"vgg{d}": ([64, 128, 256, 512, 512], 512) for d in (8, 11, 13, 16, 19)},
    # RepDistiller models/mobilenetv2.py: f0 = conv1 (32w), f1..f4 after blocks[1], [2], [4],
    # [6] (24w, 32w, 96w, 320w, int-rounded); f5 = pooled conv2 (1280). ReviewKD's
    # build_review_kd (CIFAR-100/model/reviewkd.py): in_channels [12, 16, 48, 160, 1280].
    "mobilenetv2": ([16, 12, 16, 48, 160], 1280),
    "mobilenetv2_x0_1": ([3, 2, 3, 9, 32], 1280),  # mobilenetv2_T_w(6, 0.1)
    # RepDistiller models/ShuffleNetv1.py: 24-channel stem, out_planes [240, 480, 960]
    "shufflenetv1": ([24, 240, 480, 960], 960),
    # RepDistiller models/ShuffleNetv2.py: 24-channel stem, f1..f3 = (116, 232, 464); f4 =
    # pooled conv2 (1024). ReviewKD: in_channels [116, 232, 464, 1024]; mdistiller
    # get_stage_channels: [24, 116, 232, 464].
    "shufflenetv2": ([24, 116, 232, 464], 1024),
    # mdistiller models/imagenet/resnet.py: feats = relu(stem) (64), relu(feat1..4)
    "imagenet_resnet18": ([64, 64, 128, 256, 512], 512),
    "imagenet_resnet34": ([64, 64, 128, 256, 512], 512),
    "imagenet_resnet50": ([64, 256, 512, 1024, 2048], 2048),
    # no reference code lists features of torchvision's MobileNetV2: the points of RepDistiller's
    # CIFAR MobileNetV2 at width 1 (stem 32, after the 24/32/96/320 groups), pooled head 1280
    "imagenet_mobilenetv2": ([32, 24, 32, 96, 320], 1280),
}

ZOO = [name for name in list_models()
       if name != "mlp" and getattr(MODELS.get(name), "__module__", "").startswith("mcmi.")]


def test_expected_channels_cover_the_zoo():
    assert set(EXPECTED_CHANNELS) == set(ZOO)


@pytest.mark.parametrize("arch", sorted(EXPECTED_CHANNELS))
def test_stage_channels_are_the_references(arch):
    with torch.device("meta"):
        model = create_model(arch, num_classes=NUM_CLASSES)
    channels, pooled = EXPECTED_CHANNELS[arch]
    assert model.stage_channels == channels
    assert model.num_features == pooled
    if arch in R.REFERENCE_ARCHS:  # the table agrees with the reference layout module
        assert R.reference_channels(arch) == (channels, pooled)


# ---------------------------------------------------------- what each distiller is handed
#: (teacher, student) pairs: the paper's resnet56 -> resnet20, wrn_40_2 -> wrn_16_2 and
#: vgg13 -> MobileNetV2 (the 160-channel map), resnet8x4 teaching ShuffleNetV2 (the 464-channel
#: map; a cheap stand-in for the paper's resnet32x4 teacher, whose pairs run with ``-m slow``).
PAIRS = [
    ("resnet56", "resnet20"),
    ("wrn_40_2", "wrn_16_2"),
    ("vgg13", "mobilenetv2"),
    ("resnet8x4", "shufflenetv2"),
]
SLOW_PAIRS = [("resnet32x4", "resnet8x4"), ("resnet32x4", "shufflenetv2")]
PAIR_PARAMS = [pytest.param(t, s, id=f"{t}-{s}") for t, s in PAIRS] + [
    pytest.param(t, s, id=f"{t}-{s}", marks=pytest.mark.slow) for t, s in SLOW_PAIRS
]
FEATURE_METHODS = ["at", "sp", "vid", "fitnet", "rkd", "pkt", "cc", "crd", "reviewkd", "hsakd"]
BATCH = 4


class Recorder:
    """Records the positional arguments of wrapped functions and of hooked modules."""

    def __init__(self) -> None:
        self.calls: dict[str, list[tuple]] = {}

    def wrap(self, name: str, fn):
        def wrapped(*args, **kwargs):
            self.calls.setdefault(name, []).append(args)
            return fn(*args, **kwargs)

        return wrapped

    def hook(self, name: str, module: torch.nn.Module) -> None:
        def pre(_module, args):
            self.calls.setdefault(name, []).append(args)

        module.register_forward_pre_hook(pre)

    def one(self, name: str) -> tuple:
        calls = self.calls.get(name, [])
        assert len(calls) == 1, f"{name}: called {len(calls)} times"
        return calls[0]


def hsakd_maps(arch: str, feats: list[Tensor]) -> list[Tensor]:
    """The maps HSAKD's heads read (github.com/winycg/HSAKD, ``models/*.py``: the backbones'
    ``is_feat`` lists), in terms of RepDistiller's list: ``feats[1:-1]`` (``[f1, f2, f3]`` of the
    ResNets, WRNs, ShuffleNets; ``[f1, .., f4]`` of MobileNetV2), except VGG's ``[f0, f1, f2,
    f4]`` (its ``vgg.py`` returns block 4's output as "f3" and no block-3 map)."""
    if R.family(arch) == "vgg":
        return [feats[0], feats[1], feats[2], feats[4]]
    return feats[1:-1]


def build_method(name: str, student, teacher):
    kwargs = resolve_test_options(METHODS.get(name), student, teacher)
    if "teacher_heads" in kwargs:  # the authors' heads, whose inputs this test checks (test_options: light ones)
        kwargs["teacher_heads"] = build_aux_heads(teacher)
    return METHODS.build(name, student, teacher, **kwargs)


@pytest.mark.parametrize("method", FEATURE_METHODS)
@pytest.mark.parametrize(("t_arch", "s_arch"), PAIR_PARAMS)
def test_distiller_receives_repdistiller_maps(method, t_arch, s_arch, ref_dir, monkeypatch):
    import mcmi.methods.at as at_mod
    import mcmi.methods.fitnet as fitnet_mod
    import mcmi.methods.pkt as pkt_mod
    import mcmi.methods.reviewkd as reviewkd_mod
    import mcmi.methods.rkd as rkd_mod
    import mcmi.methods.sp as sp_mod

    torch.manual_seed(0)
    sd_t, teacher = load_reference(t_arch, ref_dir, seed=1)
    sd_s, student = load_reference(s_arch, ref_dir, seed=2)
    m = build_method(method, student, teacher).eval()  # eval: the student's BN uses running stats
    rec = Recorder()
    x = make_input(BATCH, seed=5)
    batch = {"image": x, "label": torch.arange(BATCH) % NUM_CLASSES, "index": torch.arange(BATCH)}
    m.prepare([batch])

    if method == "hsakd":  # the heads see the 4-fold rotated batch
        x = rotate_batch(x)[0]
    s_ref, _ = R.repdistiller_forward(s_arch, sd_s, x)
    t_ref, _ = R.repdistiller_forward(t_arch, sd_t, x)
    t_pre, _ = R.repdistiller_forward(t_arch, sd_t, x, preact=True)

    def as_map(v: Tensor) -> Tensor:
        return v[:, :, None, None]

    # Each check: what the method gets vs what RepDistiller's train_student.py/loops.py gets
    # (feat_s/feat_t = model(x, is_feat=True), preact=False for all of these).
    if method == "at":  # loops.py: g_s = feat_s[1:-1]; g_t = feat_t[1:-1]
        monkeypatch.setattr(at_mod, "at_loss_multi", rec.wrap("at", at_mod.at_loss_multi))
        m(batch)
        s, t = rec.one("at")[:2]
        assert_same_list(s, s_ref[1:-1], "AT student")
        assert_same_list(t, t_ref[1:-1], "AT teacher")
    elif method == "sp":  # loops.py: g_s = [feat_s[-2]]; g_t = [feat_t[-2]]
        monkeypatch.setattr(sp_mod, "sp_loss", rec.wrap("sp", sp_mod.sp_loss))
        m(batch)
        s, t = rec.one("sp")[:2]
        assert_same(s, s_ref[-2], "SP student")
        assert_same(t, t_ref[-2], "SP teacher")
    elif method == "vid":  # loops.py: g_s = feat_s[1:-1]; g_t = feat_t[1:-1], one regressor each
        for i, reg in enumerate(m.regressors):
            rec.hook(f"vid{i}", reg)
        m(batch)
        assert len(m.regressors) == len(s_ref[1:-1]) == len(t_ref[1:-1])
        for i in range(len(m.regressors)):
            s, t = rec.one(f"vid{i}")[:2]
            assert_same(s, s_ref[1 + i], f"VID student {i}")
            assert_same(t, t_ref[1 + i], f"VID teacher {i}")
    elif method == "fitnet":  # loops.py: f_s = regress(feat_s[hint_layer]); f_t = feat_t[hint_layer]
        h = 2  # --hint_layer default (train_student.py), mdistiller CFG.FITNET.HINT_LAYER
        assert m.cfg.hint_layer == h
        rec.hook("regressor", m.regressor)
        monkeypatch.setattr(fitnet_mod, "hint_loss", rec.wrap("hint", fitnet_mod.hint_loss))
        m(batch)
        assert_same(rec.one("regressor")[0], s_ref[h], "FitNet student hint")
        assert_same(rec.one("hint")[1], t_ref[h], "FitNet teacher hint")
    elif method in ("rkd", "pkt"):  # loops.py: f_s = feat_s[-1]; f_t = feat_t[-1]
        mod, fn = (rkd_mod, "rkd_loss") if method == "rkd" else (pkt_mod, "pkt_loss")
        monkeypatch.setattr(mod, fn, rec.wrap(method, getattr(mod, fn)))
        m(batch)
        s, t = rec.one(method)[:2]
        assert_same(s, s_ref[-1], f"{method} student")
        assert_same(t, t_ref[-1], f"{method} teacher")
    elif method in ("cc", "crd"):  # loops.py: embed_s(feat_s[-1]), embed_t(feat_t[-1])
        rec.hook("embed_s", m.embed_s)
        rec.hook("embed_t", m.embed_t)
        m(batch)
        assert_same(rec.one("embed_s")[0], s_ref[-1], f"{method} student")
        assert_same(rec.one("embed_t")[0], t_ref[-1], f"{method} teacher")
    elif method == "reviewkd":
        # ReviewKD CIFAR-100/model/reviewkd.py: student(x, is_feat=True) -> feats[::-1] zipped
        # with the ABFs (f0 falls off): f1..f_last + pooled; train.py: teacher(x, is_feat=True,
        # preact=True)[0][1:]
        rec.hook("fusion", m.fusion)
        monkeypatch.setattr(reviewkd_mod, "hcl_loss", rec.wrap("hcl", reviewkd_mod.hcl_loss))
        m(batch)
        (s_levels,) = rec.one("fusion")
        assert_same_list(s_levels, [*s_ref[1:-1], as_map(s_ref[-1])], "ReviewKD student levels")
        t_levels = rec.one("hcl")[1]
        assert_same_list(t_levels, [*t_pre[1:-1], as_map(t_pre[-1])], "ReviewKD teacher levels")
    elif method == "hsakd":  # the authors' heads read their backbones' is_feat lists
        rec.hook("s_heads", m.aux_heads)
        rec.hook("t_heads", m.teacher.heads)
        m(batch)
        assert_same_list(rec.one("s_heads")[0], hsakd_maps(s_arch, s_ref), "HSAKD student heads")
        assert_same_list(rec.one("t_heads")[0], hsakd_maps(t_arch, t_ref), "HSAKD teacher heads")
    else:  # pragma: no cover
        raise AssertionError(method)


@pytest.mark.parametrize("arch", ["wrn_40_2", "mobilenetv2", "shufflenetv2", "vgg13"])
def test_hsakd_teacher_heads_read_the_reference_maps(arch, ref_dir):
    sd, model = load_reference(arch, ref_dir)
    m = METHODS.build("hsakd_teacher", model)
    rec = Recorder()
    rec.hook("heads", m.aux_heads)
    x = make_input(2, seed=7)
    m.eval()({"image": x, "label": torch.tensor([0, 1])})
    ref, _ = R.repdistiller_forward(arch, sd, rotate_batch(x)[0])
    assert_same_list(rec.one("heads")[0], hsakd_maps(arch, ref), f"{arch} HSAKD teacher heads")

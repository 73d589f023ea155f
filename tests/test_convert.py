"""Foreign checkpoints in, MCMI teachers out (issue 13): mcmi convert, load_model, weights=.

The foreign files are built from the layouts themselves, never by mcmi's converter:
``reference_layouts`` (RepDistiller's CIFAR zoo: keys, shapes and eval forward written from its
``models/*.py``; mdistiller's CIFAR models have the same names) and ``reference_torchvision``
(torchvision's ``mobilenet_v2``/``resnet18``). Logits are compared with those functional forwards,
exports with those key lists (in their registration order) and the tensors written into them.
"""
from __future__ import annotations

import json

import pytest
import torch
from helpers import write_npz
from reference_layouts import (
    REFERENCE_ARCHS,
    repdistiller_checkpoint,
    repdistiller_forward,
    repdistiller_state_dict,
)
from reference_torchvision import torchvision_forward, torchvision_state_dict

from mcmi.checkpoint import CheckpointError, save_checkpoint
from mcmi.cli import main
from mcmi.models import create_model
from mcmi.models.formats import OUTPUT_FORMATS, ConversionError, read_weights, write_weights
from mcmi.models.io import convert, load_model, load_weights

TORCHVISION = {"imagenet_mobilenetv2": "mobilenet_v2", "imagenet_resnet18": "resnet18"}


def max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def same_tensors(a: dict, b: dict) -> bool:
    """Same keys in the same order, every tensor equal (dtype and values)."""
    return list(a) == list(b) and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


def randomized(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """``model`` with random BN statistics and affine parameters, so that a swapped BN shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif name.endswith(("running_mean", "bias")):
                t.copy_(0.1 * torch.randn(t.shape, generator=g))
            elif name.endswith("num_batches_tracked"):
                t.fill_(int(torch.randint(1, 1000, (), generator=g)))
    return model.eval()


def run_checkpoint(path, model: torch.nn.Module, arch: str, num_classes: int):
    """An mcmi model checkpoint as the trainer writes ``best.pt`` (method state under ``model.``)."""
    meta = {"method": "MLL", "model": type(model).__name__, "num_classes": num_classes, "arch": arch,
            "arch_args": {}, "data": "cifar100"}
    return save_checkpoint(path, {"kind": "model", "meta": meta, "epoch": 3, "accuracy": 0.5,
                                  "method": {f"model.{k}": v for k, v in model.state_dict().items()}})


# --------------------------------------------------------------- the "Done when" checks
@pytest.mark.parametrize("arch", ["resnet56", "wrn_40_2", "resnet8x4"])
@pytest.mark.parametrize("kind", ["epoch", "last"])
def test_repdistiller_teacher_same_logits_and_exports_back(tmp_path, arch, kind):
    sd = repdistiller_state_dict(arch, 100, seed=1)
    src = tmp_path / "ckpt_epoch_240.pth"
    torch.save(repdistiller_checkpoint(sd, kind), src)  # "last": with opt = argparse.Namespace
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    _, ref = repdistiller_forward(arch, sd, x)

    model = load_model(src, arch=arch)
    assert not model.training
    with torch.no_grad():
        assert max_rel(model(x), ref) < 1e-4

    # foreign -> mcmi checkpoint -> RepDistiller again: identical keys, order and tensors
    assert main(["convert", str(src), str(tmp_path / "teacher.pt"), "--arch", arch]) == 0
    with torch.no_grad():
        assert max_rel(load_model(tmp_path / "teacher.pt")(x), ref) < 1e-4
    assert main(["convert", str(tmp_path / "teacher.pt"), str(tmp_path / "back.pth"), "--to", "repdistiller"]) == 0
    back = torch.load(tmp_path / "back.pth", weights_only=True)
    assert list(back) == ["model"] and same_tensors(back["model"], sd)


@pytest.mark.parametrize("arch", list(TORCHVISION))
def test_torchvision_state_dict_same_logits_and_exports_back(tmp_path, arch):
    tv = TORCHVISION[arch]
    sd = torchvision_state_dict(tv, 10, seed=2)
    torch.save(sd, tmp_path / f"{tv}.pth")  # torchvision's own files are bare state dicts
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))  # any multiple of 32
    loaded = load_weights(tmp_path / f"{tv}.pth", arch=arch)
    assert loaded.layout == "torchvision" and loaded.num_classes == 10
    with torch.no_grad():
        assert max_rel(loaded.model(x), torchvision_forward(tv, sd, x)) < 1e-4
    convert(tmp_path / f"{tv}.pth", tmp_path / "t.pt", arch=arch)
    convert(tmp_path / "t.pt", tmp_path / "back.pth", to="torchvision")
    assert same_tensors(torch.load(tmp_path / "back.pth", weights_only=True), sd)


@pytest.mark.parametrize("arch", REFERENCE_ARCHS)
def test_every_cifar_zoo_model_reads_repdistiller_layout(tmp_path, arch):
    """Each architecture of RepDistiller's zoo (mcmi names) loads strictly from RepDistiller's layout,
    computes its logits, and exports back to exactly that layout."""
    sd = repdistiller_state_dict(arch, 10, seed=3)
    torch.save({"model": sd, "epoch": 240}, tmp_path / "t.pth")
    loaded = load_weights(tmp_path / "t.pth", arch=arch)
    assert loaded.layout in ("repdistiller", "mcmi (= repdistiller)") and loaded.num_classes == 10
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert max_rel(loaded.model(x), repdistiller_forward(arch, sd, x)[1]) < 1e-4
    write_weights(tmp_path / "back.pth", loaded.model, arch, "repdistiller", loaded.meta)
    assert same_tensors(torch.load(tmp_path / "back.pth", weights_only=True)["model"], sd)


# ------------------------------------------------------------------------ export formats
# one per renaming rule of mcmi.models.keymaps (fc, none, classifier.0, linear, classifier.1); the
# resnetv2 rule (linear + shortcut) and torchvision's fc export in the tests above
ROUNDTRIP_ARCHS = ["resnet8", "vgg8", "mobilenetv2", "shufflenetv1", "imagenet_mobilenetv2"]


def reference_keys(arch: str, num_classes: int) -> list[str]:
    """The key list of ``arch``'s own toolkit, from the reference layouts."""
    if arch in TORCHVISION:
        return list(torchvision_state_dict(TORCHVISION[arch], num_classes))
    return list(repdistiller_state_dict(arch, num_classes))


@pytest.mark.parametrize("arch", ROUNDTRIP_ARCHS)
def test_run_checkpoint_to_every_format_and_back(tmp_path, arch):
    model = randomized(create_model(arch, num_classes=7), seed=4)
    mine = model.state_dict()
    ckpt = run_checkpoint(tmp_path / "best.pt", model, arch, 7)
    toolkit = "torchvision" if arch in TORCHVISION else "repdistiller"
    for to in OUTPUT_FORMATS:
        dst = tmp_path / f"out_{to}"
        if to in ("repdistiller", "torchvision") and to != toolkit:
            with pytest.raises(ConversionError, match=f"{arch}.*no {to} layout.*--to {toolkit}"):
                convert(ckpt, dst, to=to)
            assert not dst.exists()
            continue
        convert(ckpt, dst, to=to)
        if to in ("repdistiller", "torchvision"):
            raw = torch.load(dst, weights_only=True)
            raw = raw["model"] if to == "repdistiller" else raw
            assert list(raw) == reference_keys(arch, 7)  # the toolkit's names, in its order
            assert all(torch.equal(a, b) for a, b in zip(raw.values(), mine.values()))
            back = load_model(dst, arch=arch)
        elif to == "state_dict":
            assert same_tensors(torch.load(dst, weights_only=True), mine)
            back = load_model(dst, arch=arch)
        elif to == "safetensors":
            from safetensors.torch import load_file

            raw = load_file(dst)
            assert same_tensors({k: raw[k] for k in mine}, mine) and set(raw) == set(mine)
            back = load_model(dst)  # the header records the architecture
        else:
            back = load_model(dst)
        assert same_tensors(back.state_dict(), mine), to


def test_safetensors_header_and_foreign_safetensors(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    model = randomized(create_model("resnet8", num_classes=5))
    convert(run_checkpoint(tmp_path / "last.pt", model, "resnet8", 5), tmp_path / "t.safetensors")  # by suffix
    with safe_open(str(tmp_path / "t.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert meta["arch"] == "resnet8" and meta["num_classes"] == "5"
    loaded = load_weights(tmp_path / "t.safetensors")
    assert (loaded.arch, loaded.layout, loaded.container) == ("resnet8", "mcmi", "safetensors")
    with pytest.raises(CheckpointError, match="holds a 'resnet8' model, expected 'resnet20'"):
        load_model(tmp_path / "t.safetensors", arch="resnet20")
    # a safetensors file of another toolkit (no mcmi header): RepDistiller names, arch given
    sd = repdistiller_state_dict("resnet8", 5, seed=6)
    save_file(sd, str(tmp_path / "rd.safetensors"))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert max_rel(load_model(tmp_path / "rd.safetensors", arch="resnet8")(x),
                       repdistiller_forward("resnet8", sd, x)[1]) < 1e-4
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ConversionError, match="bad.safetensors.*unreadable safetensors"):
        load_model(tmp_path / "bad.safetensors", arch="resnet8")


# ------------------------------------------------------------------------ detection and wrappers
@pytest.mark.parametrize("wrap", ["bare", "model", "state_dict", "net", "dataparallel"])
def test_containers_and_dataparallel_prefix(tmp_path, wrap):
    sd = repdistiller_state_dict("resnet8", 10, seed=7)
    obj = {
        "bare": sd,
        "model": {"model": sd, "epoch": 240, "best_acc": torch.tensor(70.0)},
        "state_dict": {"state_dict": sd, "epoch": 3},
        "net": {"net": sd, "acc": 93.0, "epoch": 199},
        "dataparallel": {"model": {f"module.{k}": v for k, v in sd.items()}},
    }[wrap]
    torch.save(obj, tmp_path / "t.pth")
    wf = read_weights(tmp_path / "t.pth")
    assert list(wf.state_dict) == list(sd) and not wf.is_mcmi
    assert wf.container == {"bare": "state dict", "dataparallel": "{'model': ...}"}.get(wrap, f"{{{wrap!r}: ...}}")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert max_rel(load_model(tmp_path / "t.pth", arch="resnet8")(x), repdistiller_forward("resnet8", sd, x)[1]) < 1e-4


def test_layout_detected_from_keys(tmp_path):
    def layout(obj, arch):
        torch.save(obj, tmp_path / "f.pth")
        return load_weights(tmp_path / "f.pth", arch=arch).layout

    assert layout(repdistiller_state_dict("resnet56", 10), "resnet56") == "repdistiller"
    assert layout(repdistiller_state_dict("ShuffleV2", 10), "shufflenetv2") == "repdistiller"
    assert layout(repdistiller_state_dict("vgg13", 10), "vgg13") == "mcmi (= repdistiller)"  # same names
    assert layout(torchvision_state_dict("resnet18", 10), "imagenet_resnet18") == "torchvision"
    assert layout(create_model("resnet56", 10).state_dict(), "resnet56") == "mcmi"  # a plain mcmi state dict


def test_layout_table_names_the_toolkits_models():
    """keymaps.LAYOUTS covers the zoo's reference architectures under RepDistiller's model_dict names."""
    from reference_layouts import canonical

    from mcmi.models.keymaps import LAYOUTS

    rd = {a: lay.reference for a, lay in LAYOUTS.items() if lay.toolkit == "repdistiller"}
    assert set(rd) == set(REFERENCE_ARCHS)
    assert all(canonical(name) == arch for arch, name in rd.items() if arch != "mobilenetv2_x0_1")
    assert {a: LAYOUTS[a].reference for a in TORCHVISION} == TORCHVISION


def test_files_without_batchnorm_counters_load(tmp_path):
    """PyTorch < 0.4.1 wrote no ``num_batches_tracked``; it does not enter the forward pass."""
    sd = {k: v for k, v in repdistiller_state_dict("resnet8", 10).items() if not k.endswith("num_batches_tracked")}
    torch.save({"model": sd}, tmp_path / "old.pth")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert max_rel(load_model(tmp_path / "old.pth", arch="resnet8")(x), repdistiller_forward("resnet8", sd, x)[1]) < 1e-4


# ------------------------------------------------------------------------ errors
def test_unmatched_key_wrong_shape_and_class_count_are_errors(tmp_path):
    base = repdistiller_state_dict("resnet8", 10)

    def fails(sd, match, **kw):
        torch.save({"model": sd}, tmp_path / "bad.pth")
        with pytest.raises(ConversionError, match=match) as e:
            load_model(tmp_path / "bad.pth", **{"arch": "resnet8", **kw})
        assert "\n" not in str(e.value) and "bad.pth" in str(e.value)

    fails({**base, "fc2.weight": torch.zeros(3)}, r"unexpected \[fc2\.weight\]")
    fails({k: v for k, v in base.items() if k != "layer2.0.conv1.weight"}, r"missing \[layer2\.0\.conv1\.weight\]")
    fails({k: v for k, v in base.items() if k != "fc.bias"}, r"missing \[fc\.bias\]")  # in the file's names
    fails({**base, "layer3.0.conv2.weight": torch.zeros(64, 64, 1, 1)},
          r"layer3\.0\.conv2\.weight \(64, 64, 1, 1\) vs \(64, 64, 3, 3\)")
    fails(base, r"expected 100 classes, found 10 \(its classifier fc\.weight has shape \(10, 64\)\)", num_classes=100)
    fails(base, "weights do not fit 'resnet20'.*the file fits resnet8 \\(repdistiller\\)", arch="resnet20")
    fails(base, "without its architecture.*fit resnet8 \\(repdistiller\\)", arch=None)
    fails(base, "unknown architecture 'resnt8'", arch="resnt8")
    torch.save({"epoch": 3, "acc": 0.5}, tmp_path / "nothing.pth")
    with pytest.raises(ConversionError, match="holds no state dict"):
        load_model(tmp_path / "nothing.pth", arch="resnet8")


def test_cli_errors_one_line_exit_2_nothing_written(tmp_path, capsys):
    sd = repdistiller_state_dict("resnet8", 10)
    torch.save({"model": {**sd, "extra.weight": torch.zeros(1)}}, tmp_path / "bad.pth")
    torch.save({"model": sd}, tmp_path / "good.pth")
    for argv, needle in [
        (["convert", str(tmp_path / "bad.pth"), str(tmp_path / "o.pt"), "--arch", "resnet8"], "extra.weight"),
        (["convert", str(tmp_path / "good.pth"), str(tmp_path / "o.pt"), "--arch", "resnet8", "--num-classes", "4"],
         "expected 4 classes, found 10"),
        (["convert", str(tmp_path / "good.pth"), str(tmp_path / "o.pt"), "--arch", "resnt8"], "resnt8"),
        (["convert", str(tmp_path / "good.pth"), str(tmp_path / "o.pt")], "--arch NAME"),
        (["convert", str(tmp_path / "good.pth"), str(tmp_path / "o.pt"), "--arch", "resnet8", "--to", "torchvision"],
         "no torchvision layout"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1, err
        assert not (tmp_path / "o.pt").exists()
    try:  # the parser's own check of --to
        rc = main(["convert", str(tmp_path / "good.pth"), str(tmp_path / "o.pt"), "--to", "repdistiler"])
    except SystemExit as e:
        rc = e.code
    assert rc == 2 and "repdistiler" in capsys.readouterr().err and not (tmp_path / "o.pt").exists()


def test_cli_choices_are_the_library_formats():
    from mcmi.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "cmd").choices["convert"]
    (to,) = [a for a in sub._actions if a.dest == "to"]
    assert tuple(to.choices) == OUTPUT_FORMATS


def test_load_model_is_exported_top_level():
    import mcmi

    assert mcmi.load_model is load_model


# ------------------------------------------------------------------------ the CLI and recipes
@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory):
    return write_npz(tmp_path_factory.mktemp("data") / "tiny.npz", n_train=64, n_test=32, size=32)


def test_foreign_teacher_through_evaluate_finetune_and_distill(tmp_path, tiny_npz, capsys):
    sd = repdistiller_state_dict("resnet8", 4, seed=8)
    foreign = tmp_path / "ckpt_epoch_240.pth"
    torch.save(repdistiller_checkpoint(sd, "epoch"), foreign)
    data = ["--data", "npz", "--root", str(tiny_npz)]
    # mcmi evaluate reads the foreign file directly, and gives what the converted checkpoint gives
    assert main(["evaluate", str(foreign), "--arch", "resnet8", *data]) == 0
    direct = json.loads(capsys.readouterr().out)
    assert main(["convert", str(foreign), str(tmp_path / "t.pt"), "--arch", "resnet8"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "t.pt"), *data]) == 0
    converted = json.loads(capsys.readouterr().out)
    assert {k: v for k, v in direct.items() if k != "checkpoint"} == {k: v for k, v in converted.items() if k != "checkpoint"}
    assert main(["evaluate", str(foreign), *data]) == 2
    assert "resnet8 (repdistiller)" in capsys.readouterr().err

    # model.weights= a RepDistiller file: MCMI fine-tuning starts from its weights (a tiny lr keeps them)
    common = ["data.name=npz", f"data.root={tiny_npz}", "data.batch_size=32", "model.name=resnet8",
              "train.progress=false", "train.epochs=1"]
    m = tmp_path / "mcmi"
    assert main(["finetune-mcmi", "--config", "mcmi/resnet56_cifar100", "--out", str(m), *common,
                 f"model.weights={foreign}", "train.lr=1e-9", "train.weight_decay=0"]) == 0
    assert main(["convert", str(m / "last.pt"), str(tmp_path / "mcmi_teacher.pth"), "--to", "repdistiller"]) == 0
    out = torch.load(tmp_path / "mcmi_teacher.pth", weights_only=True)["model"]
    assert list(out) == list(sd)  # the layout RepDistiller's train_student.py loads with strict=True
    learned = [k for k in sd if k.endswith("weight") and sd[k].dim() > 1]  # convs and fc
    assert learned and all(torch.allclose(out[k], sd[k], rtol=0, atol=1e-6) for k in learned)
    fresh = create_model("resnet8", num_classes=4).state_dict()
    assert not torch.allclose(fresh["layer1.0.conv1.weight"], sd["layer1.0.conv1.weight"], atol=1e-3)

    # teacher.weights= a foreign file in a distillation run
    assert main(["distill", "--out", str(tmp_path / "student"), *common, "method=kd", "teacher.name=resnet8",
                 f"teacher.weights={foreign}"]) == 0


def test_reference_torchvision_is_torchvision():
    """Where torchvision is installed (not a dependency): the reference layout is its models'."""
    try:
        import torchvision
    except (ImportError, RuntimeError):  # absent, or built for another torch
        pytest.skip("torchvision not importable")
    x = torch.randn(2, 3, 64, 64)
    for tv in TORCHVISION.values():
        model = getattr(torchvision.models, tv)(num_classes=5).eval()
        sd = torchvision_state_dict(tv, 5, seed=9)
        assert [(k, v.shape) for k, v in sd.items()] == [(k, v.shape) for k, v in model.state_dict().items()]
        model.load_state_dict(sd, strict=True)
        with torch.no_grad():
            assert max_rel(torchvision_forward(tv, sd, x), model(x)) < 1e-5

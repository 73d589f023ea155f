"""The two views of the training set teachers are measured on: plain (unaugmented) and augmented
(the training augmentation, model in eval mode: the paper's analysis script)."""
import json

import pytest
import torch
from helpers import write_npz

from mcmi.analysis.common import load_eval_data
from mcmi.checkpoint import save_checkpoint
from mcmi.cli import main
from mcmi.data import dataset_stats, load_dataset
from mcmi.metrics import evaluate
from mcmi.metrics.cmi import empirical_cmi, log_likelihood
from mcmi.metrics.train_view import describe_view, train_view_loader, view_of, views_sentence
from mcmi.models import create_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    path = write_npz(tmp_path_factory.mktemp("data") / "tiny.npz", n_train=48, n_test=16, size=32)
    ds = load_dataset("npz", "train", root=str(path))
    st = dataset_stats(ds, root=str(path))
    torch.manual_seed(0)
    model = create_model("resnet8", num_classes=ds.num_classes)
    with torch.no_grad():  # batch norms with running statistics of their own: eval mode matters
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
        last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        last.weight.mul_(30)  # confident outputs: CMI and LL well away from those of a uniform guess
    return path, ds, (st.mean, st.std), model


def manual(model, images, labels):
    """LL and CMI of the eval-mode model on ``images`` (normalized floats), by the metric functions."""
    model.eval()
    with torch.no_grad():
        probs = torch.softmax(model(images).double(), 1)
    return log_likelihood(probs, labels), empirical_cmi(probs, labels)


def user_error(capsys, argv):
    """The message of a command that must refuse ``argv`` (a SystemExit, or exit status 2 with
    the message on stderr)."""
    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as e:
        return str(e.code)
    assert rc != 0
    return capsys.readouterr().err


def stack(loader):
    batches = list(loader)
    return torch.cat([b["image"] for b in batches]), torch.cat([b["label"] for b in batches]), \
        torch.cat([b["index"] for b in batches])


def test_views_differ_and_are_computed_as_stated(setup):
    _, ds, stats, model = setup
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in stats)
    raw = ds.get_images(torch.arange(len(ds))).float()  # uint8 -> float, (N, 3, 32, 32)
    labels = ds.labels.long()

    # plain: every image once, only normalized
    x, y, idx = stack(train_view_loader(ds, "train-plain", 16, stats=stats))
    assert idx.tolist() == list(range(len(ds)))
    torch.testing.assert_close(x, (raw / 255 - mean) / std, atol=1e-5, rtol=0)
    model.train()  # evaluate() measures in eval mode whatever the model's mode, and restores it
    plain = evaluate(model, train_view_loader(ds, "train-plain", 16, stats=stats), ds.num_classes)
    assert model.training
    ll, cmi = manual(model, x, y)
    assert plain.log_likelihood == pytest.approx(ll, abs=1e-5) and plain.cmi == pytest.approx(cmi, abs=1e-5)

    # augmented: every image once, each a zero-padded 4-pixel-shift crop of itself, maybe flipped
    xa, ya, idx = stack(train_view_loader(ds, "train-augmented", 16, stats=stats, seed=3))
    assert idx.tolist() == list(range(len(ds))) and torch.equal(ya, labels)
    pixels = (xa * std + mean) * 255
    padded = torch.nn.functional.pad(raw, (4, 4, 4, 4))
    crops = torch.stack([padded[:, :, dy:dy + 32, dx:dx + 32] for dy in range(9) for dx in range(9)], 1)
    crops = torch.cat([crops, crops.flip(-1)], 1)  # (N, 162, 3, 32, 32)
    best = (crops - pixels[:, None]).abs().amax((2, 3, 4)).min(1)
    assert float(best.values.max()) < 1e-2  # every image is one of its crops/flips
    assert int((best.indices != 4 * 9 + 4).sum()) > len(ds) // 2  # and most are not the identity
    aug = evaluate(model, train_view_loader(ds, "train-augmented", 16, stats=stats, seed=3), ds.num_classes)
    ll_a, cmi_a = manual(model, xa, ya)
    assert aug.log_likelihood == pytest.approx(ll_a, abs=1e-5) and aug.cmi == pytest.approx(cmi_a, abs=1e-5)
    assert abs(aug.cmi - plain.cmi) > 0.05 * plain.cmi > 0 and abs(aug.log_likelihood - plain.log_likelihood) > 1e-3

    # reproducible given the seed; another seed draws other crops
    again = evaluate(model, train_view_loader(ds, "train-augmented", 16, stats=stats, seed=3), ds.num_classes)
    assert again.cmi == aug.cmi and again.log_likelihood == aug.log_likelihood
    other = evaluate(model, train_view_loader(ds, "train-augmented", 16, stats=stats, seed=4), ds.num_classes)
    assert other.cmi != aug.cmi
    with pytest.raises(ValueError, match="train-plain"):
        train_view_loader(ds, "train-augmneted", 16, stats=stats)


def test_views_in_words():
    assert "unaugmented" in describe_view("train-plain") and "seed 7" in describe_view("train-augmented", 7)
    assert view_of({}) == ("train-plain", None)  # files written before views were recorded
    assert view_of({"view": "train-augmented", "view_seed": 2}) == ("train-augmented", 2)
    line = views_sentence([{}, {"view": "train-plain"}])
    assert "unaugmented training set" in line and "MTCMI.py" in line and "different views" not in line
    assert "different views" in views_sentence([{}, {"view": "train-augmented", "view_seed": 0}])


def test_evaluate_command_and_analysis_data_offer_both_views(setup, tmp_path, capsys):
    path, ds, stats, model = setup
    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, {"method": {f"model.{k}": v for k, v in model.state_dict().items()}, "meta": {
        "arch": "resnet8", "arch_args": {}, "num_classes": ds.num_classes,
        "normalization": {"mean": [float(v) for v in stats[0]], "std": [float(v) for v in stats[1]]}}})
    results = {}
    for extra in ([], ["--augment"], ["--augment", "--seed", "1"]):
        capsys.readouterr()
        assert main(["evaluate", str(ckpt), "--data", "npz", "--root", str(path), "--split", "train", *extra]) == 0
        results[" ".join(extra)] = json.loads(capsys.readouterr().out)
    assert results[""]["view"] == "train-plain" and results["--augment"]["view"] == "train-augmented"
    assert results["--augment"]["view_seed"] == 0 and results["--augment --seed 1"]["view_seed"] == 1
    assert results[""]["cmi"] != results["--augment"]["cmi"] != results["--augment --seed 1"]["cmi"]
    want = evaluate(model, train_view_loader(ds, "train-augmented", 256, stats=stats, seed=0), ds.num_classes)
    assert results["--augment"]["cmi"] == pytest.approx(want.cmi, abs=1e-6)
    assert "--split train" in user_error(capsys, ["evaluate", str(ckpt), "--data", "npz", "--root", str(path),
                                                  "--augment"])
    ev = load_eval_data("npz", str(path), "train", augment=True, seed=0)
    assert ev.view == "train-augmented" and "seed 0" in ev.describe()
    got = evaluate(model, ev.loader(None, 256), ds.num_classes)
    assert got.cmi == pytest.approx(want.cmi, abs=1e-6)
    assert load_eval_data("npz", str(path), "train").view == "train-plain"
    with pytest.raises(ValueError, match="split 'train'"):
        load_eval_data("npz", str(path), "test", augment=True)

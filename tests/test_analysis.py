"""Analysis tools (paper Figs. 1-3, 6, A.3, A.7): Eigen-CAM against numpy's SVD and a known first
principal component, temperature sweeps against eq. 12 / eq. 5 computed in numpy, t-SNE, curves,
per-class tables, and every figure tool end to end on a tiny npz data set."""
import json
import math

import numpy as np
import pytest
import torch

from mcmi.analysis import curves, eigencam, per_class, temperature, tsne
from mcmi.checkpoint import save_checkpoint
from mcmi.metrics import empirical_cmi
from mcmi.models import create_model


# ------------------------------------------------------------------------------ helpers
def np_softmax(z):
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def np_cmi(p, y):
    total = 0.0
    for c in np.unique(y):
        pc = p[y == c]
        q = pc.mean(0)
        total += np.sum(pc * (np.log(pc) - np.log(q)))
    return total / len(y)


def np_eigencam(a, center):
    """Eigen-CAM of one (C, h, w) map written from the definition, in numpy."""
    c, h, w = a.shape
    o = a.reshape(c, h * w).T.astype(np.float64)
    if center:
        o = o - o.mean(0, keepdims=True)
    _, _, vt = np.linalg.svd(o, full_matrices=False)
    proj = o @ vt[0]
    ref = a.mean(0).reshape(-1)
    if np.corrcoef(proj, ref)[0, 1] < 0:
        proj = -proj
    proj = (proj - proj.min()) / (proj.max() - proj.min())
    return proj.reshape(h, w)


def test_eigencam_map_statistics_by_hand():
    a = torch.tensor([[[0.0, 0.2], [0.6, 1.0]]])  # 2 of 4 pixels >= 0.5
    b = 1 - a  # anti-correlated, 2 of 4 pixels >= 0.5 (0.8 and 1.0)
    st = eigencam.map_statistics({"A": a, "B": b})
    assert st["area_above_half"]["A"]["mean"] == pytest.approx(0.5)
    assert st["area_above_half"]["B"]["per_image"] == [0.5]
    assert st["pair"]["mean_pearson"] == pytest.approx(-1.0)
    assert st["pair"]["mean_abs_difference"] == pytest.approx(np.mean([1.0, 0.6, 0.2, 1.0]))


def assert_figures(paths):
    assert sorted(p.suffix for p in paths) == [".pdf", ".png"]
    png, pdf = sorted(paths, key=lambda p: p.suffix, reverse=True)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and pdf.read_bytes()[:5] == b"%PDF-"
    assert not list(png.parent.glob(".*.tmp"))  # no temp file left behind


# ------------------------------------------------------------------------------ Eigen-CAM
@pytest.mark.parametrize("center", [False, True])
def test_eigencam_recovers_known_first_component(center, monkeypatch):
    g = torch.Generator().manual_seed(0)
    h, w, c = 6, 5, 12
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    u = torch.exp(-((yy - 2) ** 2 + (xx - 3) ** 2) / 3.0).reshape(-1)  # spatial pattern, peak at (2, 3)
    v = torch.rand(c, generator=g, dtype=torch.float64) + 0.1  # channel loadings
    a = (v[:, None] * u[None, :]).reshape(c, h, w) + 1e-6 * torch.rand(c, h, w, generator=g, dtype=torch.float64)
    m = eigencam.eigencam(a, center=center)
    want = ((u - u.min()) / (u.max() - u.min())).reshape(h, w)  # u up to scale (and offset when centered)
    assert torch.allclose(m.double(), want, atol=1e-4)
    assert tuple(divmod(int(m.argmax()), w)) == (2, 3)
    # sign convention: the same map whichever sign the SVD gives its singular vectors
    svd = torch.linalg.svd
    monkeypatch.setattr(torch.linalg, "svd", lambda x, **kw: (lambda u, s, vh: (-u, s, -vh))(*svd(x, **kw)))
    assert torch.allclose(eigencam.eigencam(a, center=center).double(), want, atol=1e-4)
    monkeypatch.undo()
    raw = eigencam.eigencam(a, center=center, normalize=False).double().reshape(-1)
    assert float(torch.corrcoef(torch.stack([raw, a.mean(0).reshape(-1)]))[0, 1]) > 0.99
    if not center:  # the projection O v1 = s1 u1 itself: u times the norm of the loadings
        assert torch.allclose(raw, u * v.norm(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("center", [False, True])
def test_eigencam_matches_numpy_definition_and_sign(center):
    rng = np.random.default_rng(1)
    acts = np.maximum(rng.normal(size=(3, 16, 4, 4)), 0)  # post-ReLU-like maps, batch of 3
    got = eigencam.eigencam(torch.from_numpy(acts), center=center).numpy()
    for i in range(3):
        np.testing.assert_allclose(got[i], np_eigencam(acts[i], center), atol=1e-5)
        ref = acts[i].mean(0).reshape(-1)
        assert np.corrcoef(got[i].reshape(-1), ref)[0, 1] > 0
    if not center:  # Perron-Frobenius: the signed projection of non-negative maps is >= 0
        raw = eigencam.eigencam(torch.from_numpy(acts), normalize=False).numpy()
        assert raw.min() >= -1e-6


def test_eigencam_upsampling_and_range():
    a = torch.rand(2, 8, 4, 4, generator=torch.Generator().manual_seed(0))
    m = eigencam.eigencam(a, size=(32, 32))
    assert m.shape == (2, 32, 32) and m.dtype == torch.float32
    assert torch.allclose(m.amin((1, 2)), torch.zeros(2)) and torch.allclose(m.amax((1, 2)), torch.ones(2))
    small = eigencam.eigencam(a[0], normalize=False)
    up = torch.nn.functional.interpolate(small[None, None].double(), size=(32, 32), mode="bilinear", align_corners=False)[0, 0]
    up = (up - up.min()) / (up.max() - up.min())
    assert torch.allclose(m[0].double(), up, atol=1e-5)
    assert torch.equal(eigencam.eigencam(torch.ones(1, 3, 4, 4)), torch.zeros(1, 4, 4))  # constant map
    with pytest.raises(ValueError):
        eigencam.eigencam(torch.ones(4, 4))


def test_model_eigencam_uses_last_stage_and_restores_mode():
    torch.manual_seed(0)
    model = create_model("resnet8", num_classes=4).train()
    x = torch.randn(2, 3, 32, 32)
    m = eigencam.model_eigencam(model, x)
    assert m.shape == (2, 32, 32) and float(m.min()) >= 0 and float(m.max()) <= 1 and model.training
    with torch.no_grad():
        last = model.eval().forward_features(x).stages[-1]
    assert torch.allclose(m, eigencam.eigencam(last, size=(32, 32)), atol=1e-6)


def test_pick_images_is_seeded_and_in_class():
    labels = torch.tensor([0, 1, 1, 2, 1, 0, 1, 1])
    a = eigencam.pick_images(labels, 1, 3, seed=5)
    assert torch.equal(a, eigencam.pick_images(labels, 1, 3, seed=5)) and bool((labels[a] == 1).all())
    assert len(eigencam.pick_images(labels, 2, 4, seed=0)) == 1
    with pytest.raises(ValueError):
        eigencam.pick_images(labels, 3, 1, seed=0)


# ------------------------------------------------------------------------------ temperature
def test_temperature_sweep_against_numpy():
    rng = np.random.default_rng(2)
    z = rng.normal(scale=3.0, size=(200, 5))
    y = rng.integers(0, 5, 200)
    temps = [0.5, 1.0, 2.0, 4.0, 1e4]
    rows = temperature.temperature_sweep(torch.from_numpy(z).float(), torch.from_numpy(y), temps, chunk=64)
    z32 = torch.from_numpy(z).float().double().numpy()
    for r, t in zip(rows, temps):
        p = np_softmax(z32 / t)
        assert r["temperature"] == t
        assert r["cmi"] == pytest.approx(np_cmi(p, y), rel=1e-9, abs=1e-12)
        assert r["log_likelihood"] == pytest.approx(np.mean(np.log(p[np.arange(200), y])), rel=1e-9)
        assert r["accuracy"] == pytest.approx(np.mean(p.argmax(1) == y))
    # T = 1 is metrics.empirical_cmi of the softmax; accuracy does not depend on T; CMI -> 0
    assert rows[1]["cmi"] == pytest.approx(empirical_cmi(torch.softmax(torch.from_numpy(z).float().double(), 1),
                                                         torch.from_numpy(y)), rel=1e-12)
    assert len({r["accuracy"] for r in rows}) == 1
    assert rows[-1]["cmi"] < 1e-6 < rows[1]["cmi"]
    with pytest.raises(ValueError):
        temperature.temperature_sweep(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long), [0.0])


def test_temperature_plots(tmp_path):
    rows = {"MLL": [{"temperature": t, "cmi": 0.1 * t, "log_likelihood": -t, "accuracy": 0.7} for t in (1, 2, 4)],
            "MCMI": [{"temperature": t, "cmi": 0.2 * t, "log_likelihood": -t, "accuracy": 0.69} for t in (1, 2, 4)]}
    assert_figures(temperature.plot_temperature_sweep(rows, tmp_path / "sweep", "title"))
    for t, accs in ((1, [0.70, 0.71]), (2, [0.72])):
        for i, a in enumerate(accs):
            d = tmp_path / f"kd_t{t}_s{i}"
            d.mkdir()
            (d / "summary.json").write_text(json.dumps({"best_acc": a, "last_acc": a - 0.01}))
    acc = temperature.student_accuracy_from_runs({1: [tmp_path / "kd_t1_s0", tmp_path / "kd_t1_s1"],
                                                  2: [tmp_path / "kd_t2_s0", tmp_path / "missing"]}, "last")
    assert acc == {1.0: pytest.approx([0.69, 0.70]), 2.0: pytest.approx([0.71])}
    assert_figures(temperature.plot_cmi_with_students(rows["MLL"], acc, tmp_path / "fig1"))
    assert temperature._parse_students(["MLL:4=a", "MLL:4=b", "MCMI:2=c", "MCMI:8/1=d"]) == {
        "MLL": {(4.0, 4.0): ["a", "b"]}, "MCMI": {(2.0, 2.0): ["c"], (8.0, 1.0): ["d"]}}
    with pytest.raises(ValueError, match="T_t/T_s"):
        temperature._parse_students(["MLL:x/1=a"])
    grid = {"MLL": {(1.0, 1.0): [0.60], (4.0, 1.0): [0.62, 0.64], (4.0, 4.0): [0.66]},
            "MCMI": {(1.0, 1.0): [0.61], (4.0, 1.0): [0.65], (4.0, 4.0): [0.67]}}
    assert_figures(temperature.plot_student_temperature_grid(grid, tmp_path / "fig8"))


# ------------------------------------------------------------------------------ t-SNE, curves, per-class
def test_tsne_embed_is_deterministic_and_plots(tmp_path):
    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(3), 15)
    p = np_softmax(rng.normal(size=(45, 3)) + 4 * np.eye(3)[y])
    e1, e2 = tsne.tsne_embed(p, seed=1, perplexity=10), tsne.tsne_embed(p, seed=1, perplexity=10)
    assert e1.shape == (45, 2) and np.allclose(e1, e2)
    assert_figures(tsne.plot_tsne({"MLL": (e1, y), "MCMI": (e1[::-1], y)}, ["a", "b", "c"], tmp_path / "t", "title",
                                  {"MLL": "CMI 0.1"}))


def test_curves_read_evaluated_epochs_and_plot(tmp_path):
    rows = [{"epoch": 1, "loss": 2.0, "val_acc": 0.3, "val_ll": -2.0, "val_cmi": 0.5},
            {"epoch": 2, "loss": 1.5},  # not evaluated (eval_every)
            {"epoch": 3, "loss": 1.0, "val_acc": 0.5, "val_ll": -1.0, "val_cmi": None}]
    for name in ("mll", "mcmi"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    c = curves.read_curves(tmp_path / "mll")
    assert c == {"epoch": [1, 3], "val_cmi": [0.5, None], "val_ll": [-2.0, -1.0], "val_acc": [0.3, 0.5]}
    assert_figures(curves.curves_figure({"MLL": tmp_path / "mll", "MCMI": tmp_path / "mcmi"}, tmp_path / "out"))
    assert curves.main([f"MLL={tmp_path / 'mll'}", str(tmp_path / "mcmi"), "--metrics", "val_cmi",
                        "--out", str(tmp_path / "o2")]) == 0
    with pytest.raises(FileNotFoundError):
        curves.read_curves(tmp_path / "nothing")
    # a fine-tune drawn after its base run: epochs shifted, the base's last point first
    shifted = curves.continue_curve(c, c)
    assert shifted == {"epoch": [3, 4, 6], "val_cmi": [None, 0.5, None], "val_ll": [-1.0, -2.0, -1.0],
                       "val_acc": [0.5, 0.3, 0.5]}
    assert curves.main([f"MLL={tmp_path / 'mll'}", f"MCMI={tmp_path / 'mcmi'}", "--after", "MCMI=MLL",
                        "--out", str(tmp_path / "o3")]) == 0
    with pytest.raises(ValueError, match="both labels"):
        curves.curves_figure({"MLL": tmp_path / "mll"}, tmp_path / "o4", continues={"MCMI": "MLL"})


def test_per_class_table_orders_and_names():
    vals = {"MLL": [0.1, 0.5, math.nan, 0.3, 0.2, 0.9], "MCMI": [1, 2, 3, 4, 5, 6]}
    names = ["a", "b", "c", "d", "e", "f"]
    table = per_class.per_class_cmi_table(vals, names, k=2)
    lines = table.splitlines()
    assert lines[0] == "| rank | class | CMI MLL | CMI MCMI |"
    body = [ln.split(" | ")[1] for ln in lines[2:]]
    assert body == ["f (5)", "b (1)", "…", "e (4)", "a (0)"]  # top 2, gap, bottom 2 of the 5 present
    full = per_class.per_class_cmi_table(vals, names, k=3, sort_by="MCMI",
                                         accuracy={"MLL": [0.5] * 6, "MCMI": [1.0] * 6})
    assert [ln.split(" | ")[1] for ln in full.splitlines()[2:]] == ["f (5)", "e (4)", "d (3)", "c (2)", "b (1)", "a (0)"]
    assert "| 0.9000 | 6.0000 | 50.00 | 100.00 |" in full and "| – |" in full  # NaN shown as a dash


# ------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    rng = np.random.default_rng(0)
    d = tmp_path_factory.mktemp("analysis")
    y = np.repeat(np.arange(4), 8).astype(np.int16)
    x = (rng.integers(0, 60, (32, 32, 32, 3)) + y[:, None, None, None] * 50).astype(np.uint8)
    np.savez_compressed(d / "tiny.npz", x_train=x, y_train=y, x_test=x[::2], y_test=y[::2],
                        class_names=np.array(["red", "green", "blue", "grey"]))
    ckpts = {}
    for i, name in enumerate(("MLL", "MCMI")):
        torch.manual_seed(i)
        model = create_model("resnet8", num_classes=4)
        state = {"meta": {"arch": "resnet8", "num_classes": 4},
                 "method": {f"model.{k}": v for k, v in model.state_dict().items()}}
        ckpts[name] = str(save_checkpoint(d / f"{name}.pt", state))
    return d, ckpts


def test_figure_tools_end_to_end(tiny):
    d, ckpts = tiny
    common = dict(data="npz", root=str(d / "tiny.npz"), device="cpu")
    info = eigencam.eigencam_figure(ckpts, out=d / "cam", class_name="blue", num_images=3, **common)
    assert info["class"] == "blue" and len(info["indices"]) == 3 and set(info["predictions"]) == {"MLL", "MCMI"}
    assert 0 < info["map_stats"]["area_above_half"]["MCMI"]["mean"] <= 1
    assert -1 <= info["map_stats"]["pair"]["mean_pearson"] <= 1
    assert_figures([d / "cam" / "eigencam.png", d / "cam" / "eigencam.pdf"])
    res = tsne.tsne_figure(ckpts, out=d / "tsne", classes=["red", 3], num_samples=6, perplexity=2, **common)
    assert res["n"] == 6 and res["classes"] == ["red", "grey"] and res["teachers"]["MLL"]["cmi"] >= 0
    runs = {}
    for key, acc in (((1.0, 1.0), 0.5), ((2.0, 2.0), 0.6), ((2.0, 1.0), 0.55)):
        run = d / f"kd_{key[0]:g}_{key[1]:g}"
        run.mkdir()
        (run / "summary.json").write_text(json.dumps({"best_acc": acc}))
        runs[key] = [str(run)]
    res = temperature.temperature_figure(ckpts, out=d / "temp", temperatures=[1, 2], students={"MLL": runs},
                                         **common)
    assert [r["temperature"] for r in res["sweeps"]["MCMI"]] == [1.0, 2.0] and res["n"] == 32
    assert res["student_accuracy"]["MLL"] == {"1/1": [0.5], "2/1": [0.55], "2/2": [0.6]}
    for stem in ("fig1_MLL", "fig8"):
        assert_figures([d / "temp" / f"{stem}.png", d / "temp" / f"{stem}.pdf"])
    assert json.loads((d / "temp" / "temperature.json").read_text())["sweeps"]["MLL"][0]["cmi"] >= 0
    path = per_class.per_class_report(ckpts, out=d / "pc", k=1, **common)
    text = path.read_text()
    assert "# Per-class CMI on npz (train, 32 images, 4 classes)" in text and "acc. MCMI (%)" in text
    stored = json.loads((d / "pc" / "per_class_cmi.json").read_text())
    assert stored["classes"] == ["red", "green", "blue", "grey"] and len(stored["models"]["MLL"]["per_class_accuracy"]) == 4


def test_entry_points_parse(tiny, capsys):
    d, ckpts = tiny
    data = ["--data", "npz", "--root", str(d / "tiny.npz"), "--device", "cpu"]
    assert eigencam.main([f"MLL={ckpts['MLL']}", ckpts["MCMI"], *data, "--class", "0", "--num-images", "2",
                          "--out", str(d / "cam2")]) == 0
    assert json.loads(capsys.readouterr().out)["class"] == "red"
    assert temperature.main([f"A={ckpts['MLL']}", *data, "--temperatures", "1,3", "--out", str(d / "t2")]) == 0
    assert "T=3 CMI=" in capsys.readouterr().out

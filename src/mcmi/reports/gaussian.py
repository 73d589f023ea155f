"""Report of the synthetic Gaussian study (paper Table 5) from its ``results.json``."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from mcmi.reports.paper import PAPER_TABLE5
from mcmi.reports.plots import grouped_bars, save_figure
from mcmi.reports.tables import fmt_mean_std, markdown_table, mean_std

TARGET_NAMES = {"ground_truth": "Ground truth", "mcmi": "MCMI KD", "mll": "MLL KD", "one_hot": "One-hot"}


def _by_delta(results: dict) -> dict[float, list[dict]]:
    out: dict[float, list[dict]] = {}
    for r in results["runs"]:
        out.setdefault(float(r["delta"]), []).append(r)
    return dict(sorted(out.items()))


def direction_checks(results: dict) -> list[dict]:
    """Per delta: is MCMI's Pdist below MLL's, and its student accuracy at least as high, beyond
    the seed-to-seed spread? Paired over seeds (same data set for both teachers)."""
    checks = []
    for d, runs in _by_delta(results).items():
        dp = [r["targets"]["mll"]["pdist_test"]["fro"] - r["targets"]["mcmi"]["pdist_test"]["fro"] for r in runs]
        da = [r["targets"]["mcmi"]["student_accuracy"] - r["targets"]["mll"]["student_accuracy"] for r in runs]
        mp, sp = mean_std(dp)
        ma, sa = mean_std(da)
        checks.append({
            "delta": d, "pdist_gain": mp, "pdist_gain_std": sp, "acc_gain": ma, "acc_gain_std": sa,
            "pdist_lower": mp > 0 and mp > sp, "acc_at_least": ma >= -sa,
            "n_seeds": len(runs),
        })
    return checks


def write_gaussian_report(results: dict, out_dir: str | Path, command: str = "", title: str = "") -> Path:
    """Markdown report + figures beside ``results.json``."""
    out = Path(out_dir)
    by_d = _by_delta(results)
    cfg = results["config"]
    paper_setting = cfg["noise_is"] == "std" and cfg["n"] == 100_000
    lines = [f"# {title or 'Synthetic Gaussian study (paper Table 5)'}", ""]
    if command:
        lines += ["Command:", "", f"    {command}", ""]
    lines += [
        f"Setting: {cfg['num_classes']} classes, {cfg['dim']}-dim means in {{-d, 0, d}}, noise {cfg['noise']} as a "
        f"{'standard deviation' if cfg['noise_is'] == 'std' else 'variance'}, n = {cfg['n']}, "
        f"split {cfg['split'] or ('0.9/0.05/0.05' if cfg['noise_is'] == 'std' else '0.05/0.05/0.9')} (train/val/test); "
        f"MLP {cfg['dim']}-{'-'.join(map(str, cfg['hidden']))}-{cfg['num_classes']}, Adam lr {cfg['lr']}, batch "
        f"{cfg['batch_size']}, {cfg['epochs']} epochs; MCMI fine-tune {cfg['finetune_epochs']} epochs, lr "
        f"{cfg['finetune_lr']} ({cfg['finetune_schedule']}), lambda = {cfg['lam']}; seeds {cfg['seeds']}.",
        "",
        "Student accuracy is the last-epoch accuracy on the test split. Pdist is the Frobenius norm of "
        "(target - P*) over the whole test split (N x C), as in Ren et al.'s code; 'per sample' is the mean "
        "L2 distance per test point, and 'train' the same mean over the training split (the targets the "
        "students actually saw). Mean ± std over seeds.",
        "",
    ]
    header = ["d", "metric", *TARGET_NAMES.values(), "Bayes acc (test)"]
    rows = []
    for d, runs in by_d.items():
        bayes = fmt_mean_std([100 * r["bayes_accuracy"]["empirical"] for r in runs])
        acc = [fmt_mean_std([100 * r["targets"][t]["student_accuracy"] for r in runs]) for t in TARGET_NAMES]
        pf = [fmt_mean_std([r["targets"][t]["pdist_test"]["fro"] for r in runs]) for t in TARGET_NAMES]
        pm = [fmt_mean_std([r["targets"][t]["pdist_test"]["mean"] for r in runs], 4) for t in TARGET_NAMES]
        ptr = [fmt_mean_std([r["targets"][t]["pdist_train"]["mean"] for r in runs], 4) for t in TARGET_NAMES]
        rows += [[d, "accuracy %", *acc, bayes], ["", "Pdist (test, Frobenius)", *pf, ""],
                 ["", "Pdist per sample (test)", *pm, ""], ["", "Pdist per sample (train)", *ptr, ""]]
        if d in PAPER_TABLE5:
            p = PAPER_TABLE5[d]
            rows += [["", "*paper accuracy %*", *(p["acc"][t] for t in TARGET_NAMES), ""],
                     ["", "*paper Pdist*", *(p["pdist"][t] for t in TARGET_NAMES), ""]]
    lines += ["## Students", "", markdown_table(header, rows), ""]
    if not paper_setting:
        lines += ["The paper's numbers are shown for orientation only: this is not the paper's stated setting.", ""]
    trows = []
    for d, runs in by_d.items():
        for t in ("mll", "mcmi"):
            m = lambda k, split="test": [r["teachers"][t][split][k] for r in runs]  # noqa: E731
            trows.append([d, t.upper(), fmt_mean_std([100 * v for v in m("accuracy")]),
                          fmt_mean_std([100 * v for v in m("accuracy", "train")]),
                          fmt_mean_std(m("cmi"), 4), fmt_mean_std(m("cmi", "train"), 4),
                          fmt_mean_std(m("log_likelihood"), 4)])
        if all("bayes" in r for r in runs):  # results of older versions lack it
            b = lambda k, split="test": [r["bayes"][split][k] for r in runs]  # noqa: E731
            trows.append([d, "P* (Bayes)", fmt_mean_std([100 * v for v in b("accuracy")]),
                          fmt_mean_std([100 * v for v in b("accuracy", "train")]),
                          fmt_mean_std(b("cmi"), 4), fmt_mean_std(b("cmi", "train"), 4),
                          fmt_mean_std(b("log_likelihood"), 4)])
    lines += ["## Teachers", "", "The rows P* are the Bayes posterior itself, the target a teacher estimates: raising a "
              "teacher's CMI brings it closer to P* only where its CMI is below P*'s.", "",
              markdown_table(["d", "teacher", "test acc %", "train acc %", "CMI (test)", "CMI (train)", "LL (test)"], trows), ""]
    checks = direction_checks(results)
    crow = [[c["delta"], f"{c['pdist_gain']:.3f} ± {c['pdist_gain_std']:.3f}", "yes" if c["pdist_lower"] else "no",
             f"{100 * c['acc_gain']:.2f} ± {100 * c['acc_gain_std']:.2f}", "yes" if c["acc_at_least"] else "no"]
            for c in checks]
    lines += ["## The paper's claim, checked", "",
              "Paired over seeds: Pdist(MLL) - Pdist(MCMI) on the test split (positive = MCMI closer to P*), and "
              "student accuracy MCMI - MLL in points. 'Beyond the spread' means the mean gain exceeds one "
              "standard deviation of the paired differences.", "",
              markdown_table(["d", "Pdist gain", "MCMI closer beyond spread", "accuracy gain (pts)", "MCMI acc >= MLL (within spread)"], crow), ""]
    t = results["timing"]
    lines += ["## Timing", "",
              f"Wall time {t['wall_s']:.0f} s on {t['threads']} threads; training {t['model_steps']:,} model-steps, "
              f"{t['train_flops'] / 1e12:.2f} TFLOP of model math, {t['train_gflops_per_s']:.1f} GFLOP/s achieved "
              f"(phases: " + ", ".join(f"{k} {v:.0f} s" for k, v in t.items() if k.startswith("phase")) + ")."
              + (" The figures above were re-evaluated from the finished checkpoints; the times are those of "
                 "the call that trained them." if t.get("re_evaluated") else
                 " This invocation resumed from checkpoints: the times cover only what it ran." if t.get("resumed") else ""),
              ""]
    figs = _plots(by_d, out)
    lines += ["## Figures", ""] + [f"![{p.stem}]({p.name})" for p in figs] + [""]
    path = out / "README.md"
    from mcmi.io import write_text

    write_text(path, "\n".join(lines))
    return path


def _plots(by_d: dict[float, list[dict]], out: Path) -> list[Path]:
    groups = [f"d={d:g}" for d in by_d]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    acc_series = {}
    pd_series = {}
    for t, name in TARGET_NAMES.items():
        acc = [mean_std([100 * r["targets"][t]["student_accuracy"] for r in runs]) for runs in by_d.values()]
        acc_series[name] = ([a[0] for a in acc], [a[1] for a in acc])
        if t != "ground_truth":
            pdv = [mean_std([r["targets"][t]["pdist_test"]["mean"] for r in runs]) for runs in by_d.values()]
            pd_series[name] = ([p[0] for p in pdv], [p[1] for p in pdv])
    grouped_bars(groups, acc_series, "student test accuracy (%)", "Students by target (eq. 20)", "mean spacing", axes[0])
    lo = min(min(m) for m, _ in acc_series.values())
    axes[0].set_ylim(max(0.0, lo - 5), None)
    grouped_bars(groups, pd_series, "mean ||P_tar(x) - P*(x)||_2 (test)", "Distance of targets to the Bayes posterior",
                 "mean spacing", axes[1])
    paths = save_figure(fig, out / "table5")
    return [paths[0]]

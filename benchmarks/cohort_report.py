"""The tables of ``bench_cohort.py`` (``benchmarks/cohort_speed.md``), from its results.

``bench_cohort.py`` calls :func:`render` after every group; ``python benchmarks/cohort_report.py
benchmarks/cohort_speed.json`` rewrites the Markdown from a saved json (nothing is measured).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

PAIR = ("resnet56", "resnet20")
SETS = {"3": ("kd", "dkd", "at"),
        "11": ("kd", "at", "pkt", "sp", "cc", "rkd", "vid", "crd", "dkd", "reviewkd", "hsakd")}
GOALS = {"3": 1.35, "11": 1.6}
#: Rounds whose fastest and slowest differ by more than this are flagged as disturbed by other load.
STEADY = 1.5
#: The teacher forward's share of a KD step on these CPUs (shared/MEASURED.md: about 45%).
TEACHER_SHARE = 0.45


def _mb(v: Any) -> str:
    return f"{v['peak_bytes'] / 2**20:.0f}" if isinstance(v, dict) and "peak_bytes" in v else "-"


def _spread(r: dict[str, Any]) -> float:
    return max(r["rounds"]) / max(min(r["rounds"]), 1e-12)


def header(res: dict[str, Any]) -> list[str]:
    a, m, load = argparse.Namespace(**res["args"]), res["machine"], res["load"]
    cuda = str(a.device).startswith("cuda")
    groups = "".join(f"{load[k][0]:.2f} -> {load[k][1]:.2f} over the {k.split()[1]}-member group, "
                     for k in load if k.startswith("group "))
    steps11 = res["rows"].get("cohort:11", {}).get("steps", "-")
    return [
        "# Cohorts: one teacher pass per batch for several students, against their separate runs", "",
        f"Command: `{res['command']}`  ",
        f"Date: {res['date']}  ",
        f"Machine: {m['cpu']} ({m['cpu_count']} logical CPUs), {m['threads']} torch threads, torch {m['torch']}, "
        f"Python {m['python']}, device {m['device']}.  ",
        f"Contention (measured, other processes included): 1-minute load average {load['before']:.2f} "
        f"before the benchmark, {groups}"
        f"{load.get('after', float('nan')):.2f} at the end (on {m['cpu_count']} CPUs). Absolute figures drift "
        "with the load: compare the ratios, measured side by side in the same rounds; a row whose rounds "
        f"spread more than {STEADY}x is marked as disturbed.  ",
        f"Work: {PAIR[0]} -> {PAIR[1]}, {res['data']}, batch {a.batch}, channels_last, teacher batch norm "
        f"folded{', bf16 autocast, uint8 data resident on the GPU' if cuda else ', fp32'}; each figure is the "
        f"median of {a.repeats} interleaved rounds (cohort, then separate) of {a.steps} steps after {a.warmup} "
        f"warm-up step(s), the 11-member rows of {steps11} step(s) (a step trains 11 students). CRD: "
        f"{a.crd_negatives} negatives. Memory: each case in a fresh process with "
        f"{getattr(a, 'memory_threads', a.threads)} thread(s), two steps.", "",
        "**cohort**: `CohortTrainer` (`mcmi distill --cohort ...`, the grids' `--cohort`): one loader, the "
        "teacher's features computed once per batch and handed to every member, each member its own "
        "`Trainer` step (optimizer, schedule, RNG streams).  ",
        "**separate**: each method as its own run (`mcmi distill method=...`): its own loader and teacher "
        "forward, the runs one after another. Images/s per student = images each student trains on per "
        "second of the set's wall time; cohort/separate is the cohort's speed-up.", "",
    ]


def throughput(res: dict[str, Any]) -> list[str]:
    mem = res.get("memory", {})
    unit = "CUDA max_memory_allocated" if str(res["args"]["device"]).startswith("cuda") else "process VmHWM"
    lines = ["## Throughput (images/s per student)", "",
             "| cohort | separate | cohort | cohort/separate (medians) | per round: median (range) | best rounds "
             "| goal | separate rounds | cohort rounds | rounds | teacher passes per batch (cohort) | "
             f"peak MiB cohort ({unit}) | peak MiB one separate run (max) | peak MiB separate runs (sum) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, methods in SETS.items():
        s, c = res["rows"].get(f"sep:{key}"), res["rows"].get(f"cohort:{key}")
        if not (s and c):
            continue
        ratio = c["ips"] / s["ips"]
        paired = sorted(x / y for x, y in zip(c["rounds"], s["rounds"]))
        best = max(c["rounds"]) / max(s["rounds"])
        spread = max(_spread(s), _spread(c))
        peaks = [v["peak_bytes"] for v in (mem.get(f"sep:{mt}") for mt in methods)
                 if isinstance(v, dict) and "peak_bytes" in v]
        sep_mem = [f"{max(peaks) / 2**20:.0f}", f"{sum(peaks) / 2**20:.0f}"] if len(peaks) == len(methods) \
            else ["-", "-"]
        cells = [f"{len(methods)} members: {', '.join(x.upper() for x in methods)}", f"{s['ips']:.1f}",
                 f"{c['ips']:.1f}", f"**{ratio:.2f}x**",
                 f"{statistics.median(paired):.2f}x ({paired[0]:.2f}-{paired[-1]:.2f})", f"{best:.2f}x",
                 f"{GOALS[key]:.2f}x ({'met' if ratio >= GOALS[key] else 'missed'})",
                 ", ".join(f"{x:.1f}" for x in s["rounds"]), ", ".join(f"{x:.1f}" for x in c["rounds"]),
                 "steady" if spread <= STEADY else f"**disturbed** (spread {spread:.1f}x)",
                 f"{c.get('teacher_passes_per_batch', 0):.2f}", _mb(mem.get(f"cohort:{key}")), *sep_mem]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Teacher passes per batch: HSAKD's teacher reads the 4-fold rotated batch, a different input "
              "from the other members' (its pass cannot be shared without changing HSAKD's numerics), so the "
              "11-member cohort runs the teacher twice per batch: once on the batch, once on its 4x larger "
              "rotated copy.", ""]
    if mem.get("floor"):
        lines += [f"Peak memory is measured per case in a fresh process; the process with torch imported and the "
                  f"data loaded peaks at {_mb(mem['floor'])} MiB before any model. The sum column is what the "
                  "separate runs hold when they run side by side as separate processes (each with its own copy "
                  "of the data: the floor is reached while the npz archive is decompressed).", ""]
    errors = {k: v["error"] for k, v in mem.items() if isinstance(v, dict) and "error" in v}
    if errors:
        lines += ["Memory cases that failed: " + "; ".join(f"{k}: {v}" for k, v in errors.items()), ""]
    return lines


def limits(res: dict[str, Any]) -> list[str]:
    """Each separate run alone, and the speed-up the shared teacher pass allows at most."""
    ips = res["rows"].get("sep:11", {}).get("member_ips") or {}
    if not ips:
        return []
    t = {k: 1.0 / v for k, v in ips.items()}  # seconds per image of each separate run
    total = sum(t.values())
    lines = ["## Each separate run alone (images/s, from the separate rounds of the 11-member group)", "",
             "| method | images/s | share of the 11 separate runs' time |", "|---|---|---|"]
    lines += [f"| {k.upper()} | {ips[k]:.1f} | {t[k] / total:.0%} |" for k in ips] + [""]
    if "kd" in t:
        saved = TEACHER_SHARE * t["kd"]  # one teacher pass per image, as in a KD step
        shared = [k for k in t if k != "hsakd"]
        est = {"3": 3 * t["kd"] / (3 * t["kd"] - 2 * saved),
               "11": total / (total - (len(shared) - 1) * saved)}
        lines += [f"What a shared teacher pass can save: the teacher forward is about {TEACHER_SHARE:.0%} of a "
                  "KD step on these CPUs (`shared/MEASURED.md`), and a cohort of n members that read the same "
                  "pass saves n - 1 of them. Estimated ceilings from the separate runs above: "
                  f"{est['3']:.2f}x for 3 KD-like members, {est['11']:.2f}x for the 11 (HSAKD, "
                  f"{t.get('hsakd', 0) / total:.0%} of the separate time, shares only the loader). The 1.6x goal "
                  "for 11 members is above that ceiling on this CPU.", ""]
    return lines


def data_path(res: dict[str, Any]) -> list[str]:
    ld = res["rows"].get("loader")
    cohorts = [r for k, r in res["rows"].items() if k.startswith("cohort:")]
    if not (ld and cohorts):
        return []
    fastest = max(max(r["rounds"]) for r in cohorts)  # images/s the loader must deliver, best case
    gpu = " on the GPU" if str(res["args"]["device"]).startswith("cuda") else ""
    return ["## The data path", "", "| work | images/s |", "|---|---|",
            f"| loader alone (gather, pad-4 crop + flip, normalize{gpu}) | {ld['ips']:.0f} |",
            f"| fastest cohort round, images drawn from the shared loader | {fastest:.1f} |",
            f"| loader's share of a cohort batch's time | {fastest / ld['ips']:.1%} |", "",
            f"The loader is not the limit: it produces batches {ld['ips'] / fastest:.0f}x faster than the "
            "fastest cohort round consumed them.", ""]


def render(res: dict[str, Any]) -> str:
    text = "\n".join(header(res) + throughput(res) + limits(res) + data_path(res))
    end = "." if res.get("complete", True) else " so far (cut off before the end)."
    return text + f"\nWall time of the benchmark: {res.get('wall_s', 0):.0f} s{end}\n"


def main(argv: list[str] | None = None) -> int:
    import json

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("json", help="results of bench_cohort.py (cohort_speed.json)")
    ap.add_argument("--out", help="Markdown file (default: the json's name with .md)")
    args = ap.parse_args(argv)
    res = json.loads(Path(args.json).read_text())
    Path(args.out or Path(args.json).with_suffix(".md")).write_text(render(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())

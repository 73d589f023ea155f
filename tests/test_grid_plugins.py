"""Adding a method is one file: a method defined in a module outside mcmi, named by
``MCMI_PLUGINS``, is registered when mcmi starts and runs through a grid (Table 1 here) like a
shipped one: planned, checked against its options, trained, reported under its display name."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import yaml
from helpers import write_npz

PLUGIN = textwrap.dedent('''
    """A throwaway distiller: KD's soft targets at a fixed temperature, scaled by ``weight``."""
    from dataclasses import dataclass

    import torch.nn.functional as F

    from mcmi.methods import Distiller, StepOutput, register_method


    @dataclass
    class ScaledKDOptions:
        weight: float = 0.5
        temperature: float = 2.0


    @register_method("scaled_kd")
    class ScaledKD(Distiller):
        options = ScaledKDOptions
        display_name = "ScaledKD"
        teacher_signal = "logits"

        def forward(self, batch, epoch=0):
            logits = self.student(batch["image"])
            t = self.cfg.temperature
            soft = F.kl_div(F.log_softmax(logits / t, 1), F.softmax(self.teacher_logits(batch) / t, 1),
                            reduction="batchmean")
            return StepOutput(logits, {"ce": F.cross_entropy(logits, batch["label"]),
                                       "scaled_kd": self.cfg.weight * t * t * soft})
''')


def _mcmi(args, env, cwd):
    return subprocess.run([sys.executable, "-m", "mcmi.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def test_a_plugin_method_runs_through_a_grid(tmp_path):
    data = write_npz(tmp_path / "tiny.npz", n_train=32, n_test=16, size=8)
    plugin = tmp_path / "plugins" / "scaled_kd_plugin.py"
    plugin.parent.mkdir()
    plugin.write_text(PLUGIN)
    one_epoch = {"_base_": "_base_/cifar_teacher.yaml", "train": {"epochs": 1, "milestones": [1], "progress": False}}
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({
        "pairs": [{"teacher": "resnet8", "student": "resnet8"}], "methods": ["scaled_kd"], "teacher_kinds": ["mll"],
        "seeds": [0], "method_args": {"scaled_kd": {"weight": 0.25}},
        "data": {"name": "npz", "root": str(data), "batch_size": 16, "eval_batch_size": 16},
        "teacher_recipe": one_epoch, "student_recipe": one_epoch, "device": "cpu", "out": str(tmp_path / "out")}))
    env = {**os.environ, "MCMI_PLUGINS": str(plugin), "OMP_NUM_THREADS": "1"}

    # without the plugin the grid is refused when its config is loaded
    bare = {k: v for k, v in env.items() if k != "MCMI_PLUGINS"}
    res = _mcmi(["table1", "--config", str(grid), "--dry-run"], bare, tmp_path)
    assert res.returncode == 2 and "scaled_kd" in res.stderr
    # its options are checked like a shipped method's
    res = _mcmi(["table1", "--config", str(grid), "--dry-run", "method_args.scaled_kd.wieght=1"], env, tmp_path)
    assert res.returncode == 2 and "wieght" in res.stderr and "weight" in res.stderr

    res = _mcmi(["table1", "--config", str(grid)], env, tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    student = tmp_path / "out/students/resnet8-resnet8/scaled_kd/mll/seed0"
    summary = json.loads((student / "summary.json").read_text())
    assert summary["config"]["run"]["method"] == "scaled_kd"
    assert summary["config"]["run"]["method_args"] == {"weight": 0.25}
    losses = json.loads((student / "metrics.jsonl").read_text().splitlines()[-1])
    assert "train_loss_scaled_kd" in losses
    assert "ScaledKD" in (tmp_path / "out/README.md").read_text()

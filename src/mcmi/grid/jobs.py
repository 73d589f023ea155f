"""What one job of a grid does: train a planned run (or a cohort of them), then measure a
teacher on its training set (``teacher_eval.json``: the paper's Table 1 rows)."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from mcmi.engine.rundir import read_summary, write_error
from mcmi.grid.plan import PlannedRun


def evaluate_teacher(run: PlannedRun, checkpoint: str | None = None, view: str | None = None,
                     seed: int | None = None) -> dict[str, Any]:
    """Accuracy, LL, CMI and entropy of a teacher checkpoint on the training set (the paper
    reports its teachers' LL and CMI over the training set) in ``view`` (default the run's:
    ``train-plain`` unaugmented, or ``train-augmented`` with draws from ``seed``;
    :mod:`mcmi.metrics.train_view`), and its test accuracy. The result records the view."""
    import torch

    from mcmi.data import dataset_stats
    from mcmi.experiments.train import load_datasets, resolve_device
    from mcmi.metrics import evaluate
    from mcmi.metrics.train_view import check_view, train_view_loader
    from mcmi.models.io import load_model

    checkpoint = checkpoint or (run.evaluate.checkpoint if run.evaluate else "last")
    view = check_view(view or run.eval_view, "view")
    seed = run.eval_seed if seed is None else int(seed)
    spec = run.config.data  # type: ignore[attr-defined]
    dev = resolve_device(run.config.device)  # type: ignore[attr-defined]
    train, _ = load_datasets(spec)  # the task the teacher was trained on (class_groups, subset)
    stats = dataset_stats(train, root=spec.root)
    path = run.out_dir / f"{checkpoint}.pt"
    model = load_model(path, num_classes=train.num_classes, normalization=(stats.mean, stats.std)).to(dev)
    loader = train_view_loader(train, view, spec.eval_batch_size, device=dev, stats=(stats.mean, stats.std),
                               seed=seed)
    with torch.no_grad():
        res = evaluate(model, loader, train.num_classes, dev)
    summary = read_summary(run.out_dir) or {}
    test_acc = summary.get("last_acc") if checkpoint == "last" else summary.get("best_acc")
    return {"checkpoint": str(path), "view": view, "view_seed": seed if view == "train-augmented" else None,
            "train": res.as_dict(), "test_acc": test_acc,
            "best_acc": summary.get("best_acc"), "last_acc": summary.get("last_acc")}


def teacher_eval_stale(run: PlannedRun, checkpoint: str | None = None, *, need: tuple[str, ...] = ()) -> bool:
    """Whether a teacher's ``teacher_eval.json`` is missing, unreadable, of another view (or
    seed) than ``run`` asks, of another checkpoint file (``checkpoint``, default the run's), or
    lacks one of the train figures in ``need`` (an evaluation written before it was measured)."""
    from mcmi.metrics.train_view import view_of

    try:
        ev = json.loads((run.out_dir / "teacher_eval.json").read_text())
    except (OSError, ValueError):
        return True
    want = (run.eval_view, run.eval_seed if run.eval_view == "train-augmented" else None)
    if view_of(ev) != want or any(k not in (ev.get("train") or {}) for k in need):
        return True
    checkpoint = checkpoint or (run.evaluate.checkpoint if run.evaluate else None)
    return checkpoint is not None and not str(ev.get("checkpoint", "")).endswith(f"{checkpoint}.pt")


def needs_teacher_eval(run: Any) -> bool:
    """A finished teacher run whose ``teacher_eval.json`` must still be (re)written."""
    return getattr(run, "evaluate", None) is not None and teacher_eval_stale(run)


def write_teacher_eval(run: PlannedRun) -> None:
    from mcmi.io import write_json

    write_json(run.out_dir / "teacher_eval.json", evaluate_teacher(run))


class TrainJob:
    """What one job runs: :func:`~mcmi.experiments.train.run_training` of a planned run (resuming
    from its checkpoint, so a retried or requeued job continues where the last one stopped) or
    of a cohort, then the ``teacher_eval.json`` a teacher run asks for. On failure the run's
    ``error.txt`` gets the message and traceback, and the exception fails the job.

    Picklable, for submitit; ``checkpoint()`` requeues it after a time limit or preemption."""

    def __init__(self, workdir: str | os.PathLike | None = None, threads: int | None = None,
                 chdir: bool = True) -> None:
        self.workdir = str(Path(workdir or os.getcwd()).resolve())  # relative paths of the recipes
        self.threads = threads
        self.chdir = chdir

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)

    def __call__(self, run: Any) -> dict[str, Any]:
        from mcmi.engine.distributed import cleanup
        from mcmi.engine.lock import RunLockedError
        from mcmi.experiments.train import run_training

        if self.chdir:
            os.chdir(self.workdir)
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        if getattr(run, "members", None) is not None:  # a cohort: one job, one teacher pass per batch
            from mcmi.grid.cohorts import unit_job

            return unit_job(run)
        rank = _export_torch_distributed_env()
        summary = read_summary(run.out_dir)
        try:
            if summary is None:  # not finished yet (here or by another process)
                summary = run_training(run.config, resume=True)
            if rank == 0 and needs_teacher_eval(run):
                write_teacher_eval(run)
        except Exception as err:
            if rank == 0 and not isinstance(err, RunLockedError):  # that folder is another process's
                write_error(run.out_dir, err)
            cleanup(success=False)
            raise
        cleanup()
        return {k: (summary or {}).get(k) for k in ("best_acc", "last_acc", "last_ll", "last_cmi", "epochs")}


def _export_torch_distributed_env() -> int:
    """In a job of several tasks, set torchrun's variables (RANK, WORLD_SIZE, MASTER_ADDR, ...) from
    the scheduler's, so that ``run_training`` joins one process group; returns this task's rank."""
    try:
        import submitit

        env = submitit.JobEnvironment()
    except (ImportError, RuntimeError):  # not inside a submitit job (in process, or called directly)
        return 0
    if env.num_tasks > 1:
        # each task sees all the job's GPUs and takes GPU LOCAL_RANK (distributed_context)
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    return env.global_rank


__all__ = ["TrainJob", "evaluate_teacher", "needs_teacher_eval", "teacher_eval_stale",
           "write_teacher_eval"]

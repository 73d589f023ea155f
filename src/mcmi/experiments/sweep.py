"""Sweeps: many training runs as jobs of `submitit <https://github.com/facebookincubator/submitit>`_
(the engine under Hydra's SLURM launcher), on this machine or on a SLURM cluster.

The runs are :class:`~mcmi.experiments.table1.PlannedRun` objects: the Table 1 grid
(:func:`~mcmi.experiments.table1.expand_grid` / ``select_runs``) or the cartesian product of
settings of one recipe (:func:`expand_recipe_grid`, e.g. lambda x seed). :func:`run_sweep`

- skips runs that are done (``summary.json``; Table 1 teachers also need ``teacher_eval.json``),
  and a rerun of a partial run resumes from its ``last.pt``;
- waits for a run that another process is training (a live ``run.lock``:
  :mod:`mcmi.engine.lock`; e.g. a sweep restarted while its cluster jobs still run), then counts
  it as done or resumes it if that process stopped early;
- submits a run once every run it depends on has finished (teachers first, then the MCMI
  fine-tunes, then the students: dependency waves), at most ``workers`` jobs at a time;
- retries a failed run up to ``retries`` times (it resumes from its last checkpoint), then
  records the failure in the run's ``error.txt`` and goes on with the others; runs that need a
  failed run's checkpoint are reported as blocked;
- requeues a job that reaches its time limit or is preempted (``Checkpointable``): the new job
  resumes from the run's last checkpoint.

Executors (:class:`ExecutorSpec`): ``local`` runs each job as a process on this machine
(``submitit.LocalExecutor``; with GPUs, each job gets ``gpus_per_node`` of them to itself);
``slurm`` submits sbatch jobs (``submitit.AutoExecutor``) with the partition, GPUs, time limit,
etc. of the spec. A job with ``tasks_per_node`` > 1 is one data-parallel run: every task joins
the same process group (the torchrun variables are set from SLURM's), one GPU per task.
"""
from __future__ import annotations

import itertools
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import submitit

from mcmi.config import ConfigError, load_config
from mcmi.engine.lock import describe, lock_holder
from mcmi.experiments.table1 import PlannedRun, RunOutcome, read_summary, run_status
from mcmi.experiments.train import RunConfig

log = logging.getLogger(__name__)

EXECUTORS = ("local", "slurm")


@dataclass
class ExecutorSpec:
    """Where and how the jobs of a sweep run (``mcmi sweep --cluster FILE`` reads these keys).

    ``gpus_per_node``, ``tasks_per_node``, ``nodes``, ``cpus_per_task``, ``mem_gb`` are per run.
    ``slurm`` holds any other sbatch setting submitit knows, without the ``slurm_`` prefix
    (``account``, ``qos``, ``constraint``, ``exclude``, ``setup`` (shell lines run before the
    job, e.g. activating the environment), ``additional_parameters``, ...).
    """

    executor: str = "local"  # "local" | "slurm"
    workers: int | None = None  # jobs at a time; default local: 1 (or one per free GPU set), slurm: all
    retries: int = 0  # extra attempts of a failed run
    timeout_min: int | None = None  # per job; default local: 7 days, slurm: 24 h (then requeued)
    max_requeues: int = 3  # requeues after a time limit / preemption
    folder: str | None = None  # submitit's logs and pickles; default <out>/.submitit
    poll_s: float = 2.0  # seconds between status checks
    gpus_per_node: int | None = None  # default local: 1 if this machine has GPUs, else 0; slurm: 0
    tasks_per_node: int = 1  # processes per run (data parallel, one per GPU)
    nodes: int = 1
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    slurm_partition: str | None = None
    slurm: dict[str, Any] = field(default_factory=dict)
    name: str = "mcmi"  # job name prefix
    # torch threads of each job; default for local CPU jobs: the machine's cores shared among the
    # workers, at most OMP_NUM_THREADS if set (torch's default, every core per job, oversubscribes:
    # 2 jobs x 2 threads on 2 cores run several times slower than 2 x 1); slurm/GPU jobs: torch's default
    threads_per_job: int | None = None
    # local executor with GPUs: this many runs share each GPU (K * G runs at a time, run i on GPU
    # i mod G via CUDA_VISIBLE_DEVICES); one CIFAR run rarely fills a large GPU. Ignored, with a
    # warning, on a machine without GPUs (CPU jobs: ``workers``)
    runs_per_gpu: int = 1

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {list(EXECUTORS)}, got {self.executor!r}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.retries < 0 or self.max_requeues < 0:
            raise ValueError("retries and max_requeues must be >= 0")
        if self.tasks_per_node < 1 or self.nodes < 1:
            raise ValueError("tasks_per_node and nodes must be >= 1")
        if self.executor == "local" and self.nodes != 1:
            raise ValueError("the local executor runs on one node: nodes must be 1")
        if self.threads_per_job is not None and self.threads_per_job < 1:
            raise ValueError(f"threads_per_job must be >= 1, got {self.threads_per_job}")
        if self.poll_s <= 0:
            raise ValueError(f"poll_s must be positive, got {self.poll_s}")
        if self.runs_per_gpu < 1:
            raise ValueError(f"runs_per_gpu must be >= 1, got {self.runs_per_gpu}")
        if self.runs_per_gpu > 1 and self.executor != "local":
            raise ValueError("runs_per_gpu packs runs onto this machine's GPUs (local executor); on SLURM "
                             "give each job its GPUs, or train the students of one teacher as a cohort (--cohort)")
        if self.runs_per_gpu > 1 and (self.gpus_per_node or 1) > 1:
            raise ValueError("runs_per_gpu shares a GPU among runs of one GPU each: gpus_per_node must be 1")
        bad = [k for k in self.slurm if k.startswith("slurm_")]
        if bad:
            raise ValueError(f"slurm: write the keys without the slurm_ prefix ({bad[0]!r})")


# ------------------------------------------------------------------------------------ jobs
class TrainJob(submitit.helpers.Checkpointable):
    """What one job runs: :func:`~mcmi.experiments.train.run_training` of a planned run (resuming
    from its checkpoint, so a retried or requeued job continues where the last one stopped), and
    for Table 1 teachers the ``teacher_eval.json`` that the report reads. On failure the run's
    ``error.txt`` gets the message and traceback, and the exception fails the job."""

    def __init__(self, workdir: str | os.PathLike | None = None, threads: int | None = None) -> None:
        self.workdir = str(Path(workdir or os.getcwd()).resolve())  # relative paths of the recipes
        self.threads = threads

    def __call__(self, run: PlannedRun, teacher_checkpoint: str | None = None) -> dict[str, Any]:
        from mcmi.engine.distributed import cleanup
        from mcmi.experiments.table1 import _write_error, evaluate_teacher
        from mcmi.experiments.train import run_training
        from mcmi.io import write_json

        os.chdir(self.workdir)
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        if getattr(run, "members", None) is not None:  # a cohort: one job, one teacher pass per batch
            from mcmi.experiments.cohort import unit_job

            return unit_job(run)  # type: ignore[arg-type]
        rank = _export_torch_distributed_env()
        from mcmi.engine.lock import RunLockedError

        try:
            summary = run_training(run.config, resume=True)
            if rank == 0 and teacher_checkpoint and run.stage in ("teacher", "mcmi"):
                write_json(run.out_dir / "teacher_eval.json", evaluate_teacher(run, teacher_checkpoint))
        except Exception as err:
            if rank == 0 and not isinstance(err, RunLockedError):  # that folder is another process's
                _write_error(run, err)
            cleanup(success=False)
            raise
        cleanup()
        return {k: summary.get(k) for k in ("best_acc", "last_acc", "last_ll", "last_cmi", "epochs")}


def _export_torch_distributed_env() -> int:
    """In a job of several tasks, set torchrun's variables (RANK, WORLD_SIZE, MASTER_ADDR, ...) from
    the scheduler's, so that ``run_training`` joins one process group; returns this task's rank."""
    try:
        env = submitit.JobEnvironment()
    except RuntimeError:  # not inside a submitit job (called directly)
        return 0
    if env.num_tasks > 1:
        # each task sees all the job's GPUs and takes GPU LOCAL_RANK (distributed_context)
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    return env.global_rank


# -------------------------------------------------------------------------------- executors
def slurm_parameters(spec: ExecutorSpec) -> dict[str, Any]:
    """``AutoExecutor.update_parameters`` arguments of a SLURM spec."""
    params: dict[str, Any] = {
        "name": spec.name,
        "timeout_min": spec.timeout_min if spec.timeout_min is not None else 24 * 60,
        "nodes": spec.nodes,
        "tasks_per_node": spec.tasks_per_node,
        "gpus_per_node": spec.gpus_per_node or 0,
        "cpus_per_task": spec.cpus_per_task,
        "mem_gb": spec.mem_gb,
        "slurm_partition": spec.slurm_partition,
    }
    params.update({f"slurm_{k}": v for k, v in spec.slurm.items()})
    return {k: v for k, v in params.items() if v is not None}


def make_executor(spec: ExecutorSpec, folder: str | os.PathLike) -> submitit.Executor:
    """The submitit executor of ``spec``, writing its logs under ``folder`` (one subfolder per job)."""
    folder = Path(folder) / "%j"
    if spec.executor == "slurm":
        ex = submitit.AutoExecutor(folder, cluster="slurm", slurm_max_num_timeout=spec.max_requeues)
        ex.update_parameters(**slurm_parameters(spec))
        return ex
    ex = submitit.LocalExecutor(folder, max_num_timeout=spec.max_requeues)
    ex.update_parameters(timeout_min=spec.timeout_min if spec.timeout_min is not None else 7 * 24 * 60,
                         tasks_per_node=spec.tasks_per_node, gpus_per_node=0)
    return ex


def local_gpus() -> list[int]:
    """GPU ids this process may hand to local jobs (``CUDA_VISIBLE_DEVICES`` if set)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [int(g) for g in visible.split(",") if g.strip().isdigit()]
    try:
        import torch

        return list(range(torch.cuda.device_count()))
    except Exception:  # noqa: BLE001 -- no usable CUDA: CPU jobs
        return []


# -------------------------------------------------------------------------------- scheduler
@dataclass
class _Running:
    run: PlannedRun
    job: Any
    started: float  # time.time() at submission
    gpus: tuple[int, ...] = ()


def _members(run: Any) -> tuple[PlannedRun, ...] | None:
    """The member runs of a cohort (:class:`mcmi.experiments.cohort.CohortUnit`), None for a run."""
    return getattr(run, "members", None)


def _status(run: Any) -> str:
    return run.status() if _members(run) is not None else run_status(run)


def _holder(run: Any) -> dict[str, Any] | None:
    return run.holder() if _members(run) is not None else lock_holder(run.out_dir)


def _finished(run: Any) -> bool:
    return run.finished() if _members(run) is not None else read_summary(run.out_dir) is not None


def _dep_folder(run: PlannedRun, dep: str) -> Path:
    """Folder of dependency ``dep`` of ``run``: runs of one grid live under one root, each in
    ``root/<key>``."""
    members = _members(run)
    run = members[0] if members else run
    depth = len(Path(run.key).parts)
    return Path(*run.out_dir.parts[:-depth]) / dep if depth < len(run.out_dir.parts) else Path(dep)


def _needs_teacher_eval(run: PlannedRun, teacher_checkpoint: str | None) -> bool:
    from mcmi.experiments.table1 import teacher_eval_stale

    return bool(teacher_checkpoint) and run.stage in ("teacher", "mcmi") and teacher_eval_stale(run)


def _failure_text(exc: BaseException | None) -> tuple[str, str]:
    """(one-line message, full text) of a job's exception as submitit returns it."""
    if exc is None:
        return "job failed without an exception", ""
    text = str(exc)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and set(ln.strip()) != {"-"}]
    # a FailedJobError holds the job's traceback: its last line is "Type: message"
    trace_end = [ln for ln in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b", ln)]
    msg = trace_end[-1] if trace_end else " ".join(lines[:2])
    return f"{type(exc).__name__}: {msg[:500]}", text


def _record_failure(run: PlannedRun, exc: BaseException | None, since: float) -> str:
    """The failure's one-line message; ``error.txt`` is the job's own if it wrote one during this
    attempt, else (a killed job, a time limit, a lost node) the scheduler's account of it. For a
    cohort, each unfinished member's."""
    from mcmi.io import write_text

    members = _members(run)
    if members is not None:
        msgs = [_record_failure(m, exc, since) for m in members if read_summary(m.out_dir) is None]
        return "; ".join(msgs) if msgs else _failure_text(exc)[0]

    err = run.out_dir / "error.txt"
    if err.is_file() and err.stat().st_mtime >= since - 1.0:
        lines = err.read_text(errors="replace").strip().splitlines()
        return lines[0] if lines else "failed"
    msg, text = _failure_text(exc)
    try:
        write_text(err, f"{msg}\n\n{text}\n")
    except OSError:
        log.exception("cannot write %s", err)
    return msg


def local_threads(workers: int, pending: int, cores: int | None = None, env: Mapping[str, str] | None = None) -> int:
    """Torch threads of each local CPU job: the cores shared by the jobs that run at once, at most
    ``OMP_NUM_THREADS`` when the environment sets it (two sweeps side by side, each told to use
    one thread, must not each take every core: oversubscribed OpenMP threads run several times
    slower)."""
    cores = cores if cores is not None else (os.cpu_count() or 1)
    threads = max(1, cores // max(1, min(workers, pending)))
    limit = (os.environ if env is None else env).get("OMP_NUM_THREADS", "").strip()
    return min(threads, int(limit)) if limit.isdigit() and int(limit) > 0 else threads


def run_sweep(runs: Sequence[PlannedRun], spec: ExecutorSpec | None = None, *,
              folder: str | os.PathLike | None = None, teacher_checkpoint: str | None = None,
              job: Callable[..., Any] | None = None, executor: submitit.Executor | None = None,
              ) -> list[RunOutcome]:
    """Run ``runs`` as submitit jobs in dependency order; returns one outcome per run, in order.

    Args:
        runs: planned runs; ``deps`` name other runs by ``key`` (runs not in the list must be
            done already, in the folder beside this run's).
        spec: executor, parallelism, retries, resources.
        folder: submitit's folder (default ``spec.folder``, else ``.submitit`` beside the runs).
        teacher_checkpoint: Table 1's ``teacher_checkpoint`` (``last``/``best``): teachers then
            also write ``teacher_eval.json``; None for other sweeps.
        job: the callable each job runs, ``job(run, teacher_checkpoint)`` (default
            :class:`TrainJob`); it must be picklable.
        executor: a ready submitit executor (default :func:`make_executor` of ``spec``).
    """
    spec = spec or ExecutorSpec()
    runs = list(runs)
    by_key = {r.key: r for r in runs}
    if len(by_key) != len(runs):
        raise ValueError("two planned runs share a key")
    if folder is None:
        folder = spec.folder or (_dep_folder(runs[0], ".submitit") if runs else ".submitit")
    outcomes: dict[str, RunOutcome] = {}
    before: dict[str, str] = {}
    pending: list[PlannedRun] = []
    elsewhere: list[PlannedRun] = []  # being trained by another process (a live run.lock): waited for
    member_before: dict[str, str] = {}
    for run in runs:
        before[run.key] = _status(run)
        member_before.update({m.key: run_status(m) for m in _members(run) or ()})
        holder = _holder(run)
        if before[run.key] == "done" and not _needs_teacher_eval(run, teacher_checkpoint):
            outcomes[run.key] = RunOutcome(run.key, "done", "skipped")
            log.info("sweep: %s: done, skipped", run.key)
        elif holder is not None:
            elsewhere.append(run)
            log.info("sweep: %s: being trained by another process (%s): waiting for it", run.key, describe(holder))
        else:
            pending.append(run)

    def result() -> list[RunOutcome]:  # one outcome per run; a cohort's per member
        from mcmi.experiments.cohort import member_outcomes

        out: list[RunOutcome] = []
        for r in runs:
            members = _members(r)
            out += member_outcomes(r, outcomes[r.key], member_before) if members is not None else [outcomes[r.key]]
        return out

    if not pending and not elsewhere:
        return result()

    ex = executor or make_executor(spec, folder)
    gpu_pool: list[int] = []
    gpus_per_run = 0
    if spec.executor == "local" and executor is None:
        gpu_pool = local_gpus()
        gpus_per_run = spec.gpus_per_node if spec.gpus_per_node is not None else (1 if gpu_pool else 0)
        if gpus_per_run > len(gpu_pool):
            raise ValueError(f"{gpus_per_run} GPUs per run requested, this machine offers {len(gpu_pool)}")
        if spec.runs_per_gpu > 1 and not gpu_pool:
            log.warning("sweep: runs_per_gpu=%d ignored: this machine has no GPU (CPU jobs at a time: --workers)",
                        spec.runs_per_gpu)
        gpu_pool = gpu_slots(gpu_pool, spec.runs_per_gpu)
    if spec.workers is not None:
        workers = spec.workers
    elif spec.executor == "local":
        workers = len(gpu_pool) // gpus_per_run if gpus_per_run else 1
    else:
        workers = len(pending)
    if gpus_per_run:
        workers = min(workers, len(gpu_pool) // gpus_per_run)
    threads = spec.threads_per_job
    if threads is None and spec.executor == "local" and (not gpus_per_run or spec.runs_per_gpu > 1):
        threads = local_threads(workers, len(pending))  # several GPU jobs also share the cores
    job = job or TrainJob(threads=threads)

    ok = {k for k, o in outcomes.items() if o.result == "skipped"}
    bad: set[str] = set()
    attempts: dict[str, int] = {}
    running: dict[str, _Running] = {}
    total = len(pending)

    def dep_state(run: PlannedRun, dep: str) -> str:
        if dep in ok:
            return "ok"
        if dep in bad:
            return "bad"
        if dep in by_key:
            return "wait"
        return "ok" if read_summary(_dep_folder(run, dep)) is not None else "bad"

    def submit(run: PlannedRun) -> None:
        gpus: tuple[int, ...] = ()
        if spec.executor == "local" and executor is None:
            gpus = tuple(gpu_pool[:gpus_per_run])
            del gpu_pool[:gpus_per_run]
            ex.update_parameters(gpus_per_node=len(gpus), visible_gpus=gpus)
        attempts[run.key] = attempts.get(run.key, 0) + 1
        handle = ex.submit(job, run, teacher_checkpoint)
        running[run.key] = _Running(run, handle, time.time(), gpus)
        n = attempts[run.key]
        log.info("sweep: %s: %s, submitted as job %s%s%s", run.key, before[run.key], handle.job_id,
                 f" (attempt {n} of {spec.retries + 1})" if n > 1 else "",
                 f" on GPUs {','.join(map(str, gpus))}" if gpus else "")

    def watch_elsewhere() -> None:
        for run in [r for r in elsewhere if _holder(r) is None]:
            elsewhere.remove(run)
            if _finished(run) and not _needs_teacher_eval(run, teacher_checkpoint):
                ok.add(run.key)
                outcomes[run.key] = RunOutcome(run.key, before[run.key], "skipped", "finished by another process")
                log.info("sweep: %s: finished by another process", run.key)
            else:  # that process stopped early: resume the run here
                before[run.key] = _status(run)
                pending.insert(0, run)

    def settle(r: _Running) -> None:
        run = r.run
        gpu_pool.extend(r.gpus)
        exc = r.job.exception()
        wall = time.time() - r.started
        if exc is not None and "RunLockedError" in str(exc) and _holder(run) is not None:
            elsewhere.append(run)  # another process took the folder between our check and the job's start
            attempts[run.key] -= 1
            log.info("sweep: %s: taken by another process: waiting for it", run.key)
            return
        if exc is None:
            (run.out_dir / "error.txt").unlink(missing_ok=True)
            ok.add(run.key)
            outcomes[run.key] = RunOutcome(run.key, before[run.key], "done", "", wall)
            finished = sum(o.result != "skipped" for o in outcomes.values())
            log.info("sweep: %s: done (%.0f s) [%d/%d]", run.key, wall, finished, total)
            return
        msg = _record_failure(run, exc, r.started)
        if attempts[run.key] <= spec.retries:
            log.warning("sweep: %s: attempt %d failed: %s; retrying", run.key, attempts[run.key], msg)
            pending.insert(0, run)
            return
        bad.add(run.key)
        outcomes[run.key] = RunOutcome(run.key, before[run.key], "failed", msg, wall)
        log.error("sweep: %s: failed after %d attempt(s): %s (details in %s)", run.key, attempts[run.key], msg,
                  run.out_dir / "error.txt")

    try:
        while pending or running or elsewhere:
            for key in [k for k, r in running.items() if r.job.done()]:
                settle(running.pop(key))
            watch_elsewhere()
            progressed = True
            while progressed:  # a blocked run blocks the runs that need it
                progressed = False
                for run in list(pending):
                    states = [dep_state(run, d) for d in run.deps]
                    if "bad" in states:
                        dep = run.deps[states.index("bad")]
                        msg = f"needs {dep}, which did not finish"
                        log.error("sweep: %s: blocked: %s", run.key, msg)
                        bad.add(run.key)
                        outcomes[run.key] = RunOutcome(run.key, before[run.key], "blocked", msg)
                        pending.remove(run)
                        progressed = True
            for run in list(pending):
                if len(running) >= workers:
                    break
                if all(dep_state(run, d) == "ok" for d in run.deps):
                    pending.remove(run)
                    submit(run)
            if pending and not running and not elsewhere:
                raise RuntimeError(f"sweep: nothing can start; dependency cycle among {[r.key for r in pending]}")
            if running or elsewhere:
                time.sleep(spec.poll_s)
    except BaseException:
        if running:
            if spec.executor == "local":
                log.error("sweep interrupted: stopping %d local job(s)", len(running))
                for r in running.values():
                    r.job.cancel(check=False)
            else:
                log.error("sweep interrupted: %d job(s) keep running on the cluster: %s", len(running),
                          ", ".join(f"{k} ({r.job.job_id})" for k, r in running.items()))
        raise
    return result()


def gpu_slots(gpus: Sequence[int], runs_per_gpu: int = 1) -> list[int]:
    """The pool of GPU slots of ``runs_per_gpu`` runs per GPU: ``[0, 1, .., G-1]`` repeated, so the
    first ``K * G`` runs go to GPU ``i mod G``; a finished run's slot goes to the next run."""
    return [g for _ in range(max(1, runs_per_gpu)) for g in gpus]


# --------------------------------------------------------------------- one recipe's grid
def split_values(text: str) -> list[str]:
    """``"0.05,0.1,[1,2]"`` -> ``["0.05", "0.1", "[1,2]"]``: commas inside brackets or braces
    belong to the value."""
    values, depth, cur = [], 0, []
    for ch in text:
        if ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        if ch == "," and depth == 0:
            values.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    values.append("".join(cur).strip())
    return values


def parse_grid(items: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``["method_args.lam=0.05,0.1", "train.seed=0,1,2"]`` -> ``[(key, values), ...]``."""
    grid: list[tuple[str, list[str]]] = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--grid {item!r} must look like key=value1,value2,...")
        key, raw = (s.strip() for s in item.split("=", 1))
        values = split_values(raw)
        if not key or any(not v for v in values):
            raise ConfigError(f"--grid {item!r}: empty key or value")
        if key == "out" or key.startswith("out."):
            raise ConfigError("--grid cannot vary 'out': each run gets its own folder under --out")
        if key in (k for k, _ in grid):
            raise ConfigError(f"--grid names {key!r} twice")
        if len(set(values)) != len(values):
            raise ConfigError(f"--grid {key}: a value is listed twice: {values}")
        grid.append((key, values))
    return grid


def _folder_part(value: str) -> str:
    return re.sub(r"[\s/\\:]+", "_", value).strip("_") or "_"


def run_name(assignment: Sequence[tuple[str, str]], keys: Sequence[str]) -> str:
    """Folder name of one grid point: ``lam=0.1_seed=2`` (the last part of each key, or the full
    key where two keys of the grid share their last part)."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    short = {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last)}
    return "_".join(f"{short[k]}={_folder_part(v)}" for k, v in assignment) or "run"


def expand_recipe_grid(recipe: str | os.PathLike | None, grid: Sequence[tuple[str, Sequence[str]]],
                       overrides: Sequence[str] = (), out: str | os.PathLike | None = None) -> list[PlannedRun]:
    """The cartesian product of ``grid`` over one recipe: one :class:`PlannedRun` per point, its
    ``RunConfig`` = recipe + ``overrides`` + the point's ``key=value``s, in ``out/<run_name>``
    (default ``out``: the recipe's ``out`` + ``-sweep``). Errors name the recipe and the key.
    A recipe that names a teacher gets the student defaults (lr by student, DKD/ReviewKD pair
    weights) where neither it, ``overrides`` nor the grid point set them
    (:mod:`mcmi.experiments.student_defaults`)."""
    from mcmi.experiments.student_defaults import load_run_config

    base = load_config(RunConfig, recipe, list(overrides))
    root = Path(out) if out is not None else Path(f"{str(base.out).rstrip('/')}-sweep")
    keys = [k for k, _ in grid]
    runs = []
    for values in itertools.product(*(v for _, v in grid)):
        point = list(zip(keys, values))
        name = run_name(point, keys)
        cfg = load_run_config(recipe, [*overrides, *(f"{k}={v}" for k, v in point), f"out={root / name}"])
        _check_method_args(cfg, f"{recipe} + {name}")
        runs.append(PlannedRun(name, "run", cfg, (), {k: (v,) for k, v in point}))
    names = [r.key for r in runs]
    if len(set(names)) != len(names):
        raise ConfigError(f"two grid points map to one folder name ({names}); make the values distinct")
    return runs


def _check_method_args(cfg: RunConfig, source: str) -> None:
    """Fail before submitting anything when the method is unknown or does not take an argument
    (the runs would all fail at their start)."""
    import inspect

    from mcmi.methods import METHODS

    try:
        cls = METHODS.get(cfg.method)
    except KeyError as e:
        raise ConfigError(f"{source}: {e.args[0]}") from None
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    unknown = [k for k in cfg.method_args if k not in params]
    if unknown:
        known = [p for p in params if p not in ("self", "model", "student", "teacher")]
        raise ConfigError(f"{source}: method {cfg.method!r} has no argument 'method_args.{unknown[0]}'; "
                          f"it takes {known}")


def sweep_results(runs: Sequence[PlannedRun]) -> list[dict[str, Any]]:
    """One row per run: its grid values, status and final figures (from ``summary.json``)."""
    rows = []
    for run in runs:
        s = read_summary(run.out_dir) or {}
        err = run.out_dir / "error.txt"
        row: dict[str, Any] = {"run": run.key, **{k: v[0] for k, v in run.labels.items() if len(v) == 1},
                               "status": run_status(run)}
        row.update({k: s.get(k) for k in ("best_acc", "best_epoch", "last_acc", "last_ll", "last_cmi")})
        if row["status"] != "done" and err.is_file():
            lines = err.read_text(errors="replace").strip().splitlines()
            row["error"] = lines[0] if lines else ""
        rows.append(row)
    return rows


def format_results(rows: Sequence[Mapping[str, Any]]) -> str:
    """A plain-text table of :func:`sweep_results` rows."""
    def cell(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, float) else ("" if v is None else str(v))

    cols = ["run", "status", "best_acc", "last_acc", "last_ll", "last_cmi"]
    table = [cols] + [[cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(cols))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in table]
    lines += [f"  {r['run']}: {r['error']}" for r in rows if r.get("error")]
    return "\n".join(lines)


__all__ = ["EXECUTORS", "ExecutorSpec", "TrainJob", "expand_recipe_grid", "format_results", "gpu_slots", "local_gpus",
           "make_executor", "parse_grid", "run_name", "run_sweep", "slurm_parameters", "split_values",
           "sweep_results"]

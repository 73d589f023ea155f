"""The one scheduler of every grid: runs in dependency order, at most ``workers`` at a time, on
the executor of an :class:`~mcmi.grid.executors.ExecutorSpec` (in this process, local processes,
SLURM). :func:`run_plan`

- skips runs that are done (``summary.json``; a teacher that asks for an evaluation also needs
  its ``teacher_eval.json``), and a rerun of a partial run resumes from its ``last.pt``;
- waits for a run that another process is training (a live ``run.lock``:
  :mod:`mcmi.engine.lock`; e.g. a grid restarted while its cluster jobs still run), then counts
  it as done or resumes it if that process stopped early;
- submits a run once every run it depends on has finished (teachers first, then the MCMI
  fine-tunes, then the students: dependency waves), in plan order;
- retries a failed run up to ``retries`` times (it resumes from its last checkpoint), then
  records the failure in the run's ``error.txt`` and goes on with the others; runs that need a
  failed run's checkpoint are reported as blocked;
- requeues a submitit job that reaches its time limit or is preempted: the new job resumes from
  the run's last checkpoint.
"""
from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from mcmi.engine.lock import describe
from mcmi.engine.rundir import read_summary
from mcmi.grid.executors import ExecutorSpec, gpu_slots, local_gpus, local_threads, make_executor
from mcmi.grid.jobs import TrainJob, needs_teacher_eval
from mcmi.grid.plan import PlannedRun, RunOutcome

log = logging.getLogger(__name__)


@dataclass
class _Running:
    run: PlannedRun
    job: Any
    started: float  # time.time() at submission
    gpus: tuple[int, ...] = ()


def _members(run: Any) -> tuple[PlannedRun, ...] | None:
    """The member runs of a cohort (:class:`mcmi.grid.cohorts.CohortUnit`), None for a run."""
    return getattr(run, "members", None)


def _dep_folder(run: PlannedRun, dep: str) -> Path:
    """Folder of dependency ``dep`` of ``run``: runs of one grid live under one root, each in
    ``root/<key>``."""
    members = _members(run)
    run = members[0] if members else run
    depth = len(Path(run.key).parts)
    return Path(*run.out_dir.parts[:-depth]) / dep if depth < len(run.out_dir.parts) else Path(dep)


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


def _lock_error(exc: BaseException) -> bool:
    """Whether a job failed because another process holds its run folder (in process: the
    exception itself; from submitit: its text)."""
    from mcmi.engine.lock import RunLockedError

    return isinstance(exc, RunLockedError) or "RunLockedError" in str(exc)


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


def run_plan(runs: Sequence[Any], spec: ExecutorSpec | None = None, *,
             folder: str | os.PathLike | None = None, job: Callable[..., Any] | None = None,
             executor: Any = None) -> list[RunOutcome]:
    """Run ``runs`` (planned runs, or cohorts of them: :mod:`mcmi.grid.cohorts`) in dependency
    order; returns one outcome per run (per member of a cohort), in order.

    Args:
        runs: planned runs; ``deps`` name other runs by ``key`` (runs not in the list must be
            done already, in the folder beside this run's).
        spec: executor, parallelism, retries, resources (default: in this process, one run
            after another).
        folder: submitit's folder (default ``spec.folder``, else ``.submitit`` beside the runs).
        job: the callable each job runs, ``job(run)`` (default :class:`~mcmi.grid.jobs.TrainJob`);
            picklable for submitit's executors.
        executor: a ready executor (default :func:`~mcmi.grid.executors.make_executor` of ``spec``).
    """
    spec = spec or ExecutorSpec(executor="inprocess")
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
        before[run.key] = run.status()
        member_before.update({m.key: m.status() for m in _members(run) or ()})
        holder = run.holder()
        if before[run.key] == "done" and not needs_teacher_eval(run):
            outcomes[run.key] = RunOutcome(run.key, "done", "skipped")
            log.info("grid: %s: done, skipped", run.key)
        elif holder is not None:
            elsewhere.append(run)
            log.info("grid: %s: being trained by another process (%s): waiting for it", run.key, describe(holder))
        else:
            pending.append(run)

    def result() -> list[RunOutcome]:  # one outcome per run; a cohort's per member
        from mcmi.grid.cohorts import member_outcomes

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
            log.warning("grid: runs_per_gpu=%d ignored: this machine has no GPU (CPU jobs at a time: --workers)",
                        spec.runs_per_gpu)
        gpu_pool = gpu_slots(gpu_pool, spec.runs_per_gpu)
    if spec.executor == "inprocess":
        workers = 1  # one after another, in plan order
    elif spec.workers is not None:
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
    job = job or TrainJob(threads=threads, chdir=spec.executor != "inprocess")

    ok = {k for k, o in outcomes.items() if o.result == "skipped"}
    bad: set[str] = set()
    attempts: dict[str, int] = {}
    running: dict[str, _Running] = {}
    notes: dict[str, str] = {}  # the outcome message of a run (finished by another process)
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
        handle = ex.submit(job, run)
        running[run.key] = _Running(run, handle, time.time(), gpus)
        n = attempts[run.key]
        log.info("grid: %s: %s, submitted as job %s%s%s", run.key, before[run.key], handle.job_id,
                 f" (attempt {n} of {spec.retries + 1})" if n > 1 else "",
                 f" on GPUs {','.join(map(str, gpus))}" if gpus else "")

    def watch_elsewhere() -> None:
        for run in [r for r in elsewhere if r.holder() is None]:
            elsewhere.remove(run)
            if run.finished() and not needs_teacher_eval(run):
                ok.add(run.key)
                outcomes[run.key] = RunOutcome(run.key, before[run.key], "skipped", "finished by another process")
                log.info("grid: %s: finished by another process", run.key)
            elif run.finished():  # trained elsewhere; its teacher evaluation is still to write
                notes[run.key] = "finished by another process"
                before[run.key] = run.status()
                pending.insert(0, run)
            else:  # that process stopped early: resume the run here
                before[run.key] = run.status()
                pending.insert(0, run)

    def settle(r: _Running) -> None:
        run = r.run
        gpu_pool.extend(r.gpus)
        exc = r.job.exception()
        wall = time.time() - r.started
        if exc is not None and _lock_error(exc) and run.holder() is not None:
            elsewhere.append(run)  # another process took the folder between our check and the job's start
            attempts[run.key] -= 1
            log.info("grid: %s: taken by another process: waiting for it", run.key)
            return
        if exc is None:
            (run.out_dir / "error.txt").unlink(missing_ok=True)
            ok.add(run.key)
            # a run trained before that only needed its teacher evaluation counts as skipped
            result = "skipped" if before[run.key] == "done" else "done"
            outcomes[run.key] = RunOutcome(run.key, before[run.key], result, notes.get(run.key, ""), wall)
            finished = sum(o.result != "skipped" for o in outcomes.values())
            log.info("grid: %s: done (%.0f s) [%d/%d]", run.key, wall, finished, total)
            return
        msg = _record_failure(run, exc, r.started)
        if attempts[run.key] <= spec.retries:
            log.warning("grid: %s: attempt %d failed: %s; retrying", run.key, attempts[run.key], msg)
            pending.insert(0, run)
            return
        bad.add(run.key)
        outcomes[run.key] = RunOutcome(run.key, before[run.key], "failed", msg, wall)
        log.error("grid: %s: failed after %d attempt(s): %s (details in %s)", run.key, attempts[run.key], msg,
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
                        log.error("grid: %s: blocked: %s", run.key, msg)
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
                raise RuntimeError(f"grid: nothing can start; dependency cycle among {[r.key for r in pending]}")
            if (running or elsewhere) and not any(r.job.done() for r in running.values()):
                time.sleep(spec.poll_s)
    except BaseException:
        if running:
            if spec.executor != "slurm":
                log.error("sweep interrupted: stopping %d local job(s)", len(running))
                for r in running.values():
                    r.job.cancel(check=False)
            else:
                log.error("sweep interrupted: %d job(s) keep running on the cluster: %s", len(running),
                          ", ".join(f"{k} ({r.job.job_id})" for k, r in running.items()))
        raise
    return result()


__all__ = ["run_plan"]

"""Where the jobs of a grid run: in this process, as local processes, or as SLURM jobs.

:class:`ExecutorSpec` says where and how (``mcmi <grid> --cluster FILE`` and ``mcmi sweep`` read
its keys); :func:`make_executor` builds the executor: :class:`InProcessExecutor` (the default of
the grid commands: one run after another in this process, nothing pickled), or a
`submitit <https://github.com/facebookincubator/submitit>`_ executor (``local``: each job a process
on this machine, with GPUs each job gets ``gpus_per_node`` of them; ``slurm``: sbatch jobs with the
spec's partition, GPUs, time limit, ...). A job with ``tasks_per_node`` > 1 is one data-parallel
run: every task joins the same process group, one GPU per task.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

EXECUTORS = ("inprocess", "local", "slurm")


@dataclass
class ExecutorSpec:
    """Where and how the jobs of a sweep run (``mcmi sweep --cluster FILE`` reads these keys).

    ``gpus_per_node``, ``tasks_per_node``, ``nodes``, ``cpus_per_task``, ``mem_gb`` are per run.
    ``slurm`` holds any other sbatch setting submitit knows, without the ``slurm_`` prefix
    (``account``, ``qos``, ``constraint``, ``exclude``, ``setup`` (shell lines run before the
    job, e.g. activating the environment), ``additional_parameters``, ...).
    """

    executor: str = "local"  # "inprocess" | "local" | "slurm"
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
        if self.executor != "slurm" and self.nodes != 1:
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


class _DoneJob:
    """The handle of a job :class:`InProcessExecutor` ran: finished when submitted."""

    _ids = 0

    def __init__(self, result: Any = None, exc: BaseException | None = None) -> None:
        _DoneJob._ids += 1
        self.job_id = f"inprocess-{_DoneJob._ids}"
        self._result, self._exc = result, exc

    def done(self) -> bool:
        return True

    def exception(self) -> BaseException | None:
        return self._exc

    def result(self) -> Any:
        if self._exc is not None:
            raise self._exc
        return self._result

    def cancel(self, check: bool = True) -> None:
        pass


class InProcessExecutor:
    """Runs each job in this process when it is submitted (one at a time; nothing is pickled, so
    a grid runs with methods registered at run time too). A job's exception is its outcome;
    ``KeyboardInterrupt`` and ``SystemExit`` still stop the grid."""

    def update_parameters(self, **_: Any) -> None:
        pass

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> _DoneJob:
        try:
            return _DoneJob(fn(*args, **kwargs))
        except Exception as err:  # noqa: BLE001 -- the scheduler records it as the run's failure
            return _DoneJob(exc=err)


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


def make_executor(spec: ExecutorSpec, folder: str | os.PathLike) -> Any:
    """The executor of ``spec``; submitit's write their logs under ``folder`` (one subfolder per job)."""
    if spec.executor == "inprocess":
        return InProcessExecutor()
    import submitit

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


def local_threads(workers: int, pending: int, cores: int | None = None, env: Mapping[str, str] | None = None) -> int:
    """Torch threads of each local CPU job: the cores shared by the jobs that run at once, at most
    ``OMP_NUM_THREADS`` when the environment sets it (two sweeps side by side, each told to use
    one thread, must not each take every core: oversubscribed OpenMP threads run several times
    slower)."""
    cores = cores if cores is not None else (os.cpu_count() or 1)
    threads = max(1, cores // max(1, min(workers, pending)))
    limit = (os.environ if env is None else env).get("OMP_NUM_THREADS", "").strip()
    return min(threads, int(limit)) if limit.isdigit() and int(limit) > 0 else threads


def gpu_slots(gpus: Sequence[int], runs_per_gpu: int = 1) -> list[int]:
    """The pool of GPU slots of ``runs_per_gpu`` runs per GPU: ``[0, 1, .., G-1]`` repeated, so the
    first ``K * G`` runs go to GPU ``i mod G``; a finished run's slot goes to the next run."""
    return [g for _ in range(max(1, runs_per_gpu)) for g in gpus]


__all__ = ["EXECUTORS", "ExecutorSpec", "InProcessExecutor", "gpu_slots", "local_gpus", "local_threads",
           "make_executor", "slurm_parameters"]

"""Launchers hand a study's unfinished cells to workers and wait (or, on Slurm, may return after submitting).
None of them schedules anything itself: the run folder is the unit that resumes, and its lock keeps two workers
off one cell."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from ..config import TrainConfig
from ..engine.runtime import pace_note
from ..errors import ConfigError
from ..layout import STUDY_SPEC, run_dir_for
from .cell import BUSY, train_cell

LAUNCHERS = ("inline", "local", "slurm", "ray")
WAIT_FOR_OTHERS_S = 5.0  # how often a launcher looks again at cells another worker holds


@dataclass(frozen=True)
class LaunchConfig:
    launcher: str = "inline"  # inline | local | slurm | ray
    workers: int = 2  # local: processes on this machine
    slurm_partition: str | None = None
    gpus_per_run: int = 0
    cpus_per_run: int = 2
    timeout_min: int = 240  # per job; a job that runs out is requeued and resumes from its run folder
    max_parallel: int = 32  # array tasks at once
    slurm_options: dict = field(default_factory=dict)  # extra sbatch settings, KEY=VALUE
    wait: bool = False  # slurm: follow the jobs until they end instead of returning after submitting
    ray_address: str = "auto"


def check_launch(cfg: LaunchConfig) -> LaunchConfig:
    if cfg.launcher not in LAUNCHERS:
        raise ConfigError(f"Unknown launcher {cfg.launcher!r}: choose one of {', '.join(LAUNCHERS)}.")
    if cfg.workers < 1 or cfg.cpus_per_run < 1 or cfg.gpus_per_run < 0 or cfg.timeout_min < 1 or cfg.max_parallel < 1:
        raise ConfigError("--workers, --cpus-per-run, --timeout-min and --max-parallel must be positive.")
    return cfg


def _need(module: str, extra: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"--launcher {extra} needs the {module} package: pip install 'cnnbench[{extra}]'.") from None


def run_inline(out: Path, cells: Sequence[TrainConfig], log: Callable[[str], None], callbacks, data_for) -> list[str]:
    """Today's way: one cell after another in this process, the data decoded once per data set."""
    busy, pace = [], []
    for i, cfg in enumerate(cells, 1):
        name = run_dir_for(out, cfg).name
        log(f"[{i}/{len(cells)}] {name}" + (" (resuming)" if (run_dir_for(out, cfg) / "checkpoints").exists() else ""))
        started = time.perf_counter()
        if train_cell(out, cfg.to_dict(), callbacks=callbacks(), data=data_for(cfg), log=log) == BUSY:
            busy.append(cfg)
            continue
        pace.append(time.perf_counter() - started)
        if i < len(cells):  # the cells of a grid differ in model, so this is a rough guide, said as such
            log(pace_note(sum(pace), len(pace), len(cells) - i))
    return _wait_for_others(out, busy, log)


def _wait_for_others(out: Path, busy: list[TrainConfig], log) -> list[str]:
    """Cells another live worker held: wait until they finish, or take them over if that worker stops."""
    failed: list[str] = []
    while busy:
        log(
            f"waiting for {len(busy)} run(s) another worker is training: "
            + ", ".join(run_dir_for(out, c).name for c in busy)
        )
        time.sleep(WAIT_FOR_OTHERS_S)
        still = []
        for cfg in busy:
            try:
                if train_cell(out, cfg.to_dict(), log=log) == BUSY:
                    still.append(cfg)
            except Exception:
                failed.append(run_dir_for(out, cfg).name)
        busy = still
    return failed


def _local_worker_init(gpu_ids) -> None:
    """Each worker process takes one GPU (where there are GPUs) before CUDA starts in it."""
    if gpu_ids is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu_ids.get())


def run_local(out: Path, cells: Sequence[TrainConfig], log: Callable[[str], None], workers: int) -> list[str]:
    """``workers`` processes on this machine: one GPU each where there are GPUs (CUDA_VISIBLE_DEVICES), else the
    cores shared out (threads per worker = cores / workers). A failed cell is recorded; the others go on."""
    import torch

    gpus = torch.cuda.device_count()
    workers = min(workers, len(cells)) or 1
    threads = None if gpus else max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")  # fork would copy this process's threads and CUDA state
    manager = context.Manager() if gpus else None
    gpu_ids = manager.Queue() if manager else None
    for i in range(workers if gpus else 0):
        gpu_ids.put(i % gpus)
    log(
        f"{len(cells)} runs on {workers} local workers"
        + (f", one GPU each of {gpus}" if gpus else f", {threads} threads each")
    )
    failed, busy = [], []
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_local_worker_init, initargs=(gpu_ids,)) as pool:
        futures = {pool.submit(train_cell, str(out), cfg.to_dict(), threads): cfg for cfg in cells}
        for future in as_completed(futures):
            cfg = futures[future]
            name = run_dir_for(out, cfg).name
            try:
                outcome = future.result()
            except Exception as e:  # recorded in events.jsonl by the worker; the other cells go on
                failed.append(name)
                log(f"{name}: failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
                continue
            if outcome == BUSY:
                busy.append(cfg)
            log(f"{name}: {outcome}")
    if manager is not None:
        manager.shutdown()
    return failed + _wait_for_others(out, busy, log)


class SlurmCell:
    """A cell as a submitit job: on preemption or time-out submitit calls ``checkpoint``, which requeues the same
    cell, and the requeued job resumes from its run folder (submitit's Checkpointable protocol). The last cell to
    finish writes the study's report."""

    def __init__(self, study_dir: str):
        self.study_dir = study_dir

    def __call__(self, config: dict) -> str:
        outcome = train_cell(self.study_dir, config)
        write_report_if_done(Path(self.study_dir))
        return outcome

    def checkpoint(self, config: dict):
        import submitit

        return submitit.helpers.DelayedSubmission(SlurmCell(self.study_dir), config)


def run_slurm(out: Path, cells: Sequence[TrainConfig], log: Callable[[str], None], cfg: LaunchConfig, cluster=None):
    """One job-array task per cell; returns after submitting unless ``cfg.wait``. ``cluster``: submitit's
    cluster name ("local" runs the jobs as local processes, for tests)."""
    submitit = _need("submitit", "slurm")
    executor = submitit.AutoExecutor(folder=str(out / "slurm" / "%j"), cluster=cluster)
    params = {
        "timeout_min": cfg.timeout_min,
        "cpus_per_task": cfg.cpus_per_run,
        "slurm_array_parallelism": cfg.max_parallel,
    }
    if cfg.gpus_per_run:
        params["gpus_per_node"] = cfg.gpus_per_run
    if cfg.slurm_partition:
        params["slurm_partition"] = cfg.slurm_partition
    if cfg.slurm_options:
        params["slurm_additional_parameters"] = dict(cfg.slurm_options)
    if cluster == "local":
        params = {k: v for k, v in params.items() if not k.startswith("slurm")}
    executor.update_parameters(**params)
    jobs = executor.map_array(SlurmCell(str(out)), [c.to_dict() for c in cells])
    log(
        f"submitted {len(jobs)} runs as job array {jobs[0].job_id.split('_')[0] if jobs else '-'}; "
        f"follow them with `cnnbench status {out}`"
    )
    if not cfg.wait:
        return None
    failed = []
    for job, c in zip(jobs, cells):
        try:
            job.result()
        except Exception as e:
            failed.append(run_dir_for(out, c).name)
            log(f"{run_dir_for(out, c).name}: failed ({str(e).splitlines()[0] if str(e) else type(e).__name__})")
    return failed


def _ray_cell(study_dir: str, config: dict, threads: int | None) -> str:
    if not Path(study_dir).is_dir():
        raise ConfigError(
            f"This Ray worker cannot see the study folder {study_dir}: with --launcher ray the study must be on "
            "storage every node mounts at the same path (a shared file system), not on one machine's disk."
        )
    return train_cell(study_dir, config, threads)


def run_ray(out: Path, cells: Sequence[TrainConfig], log: Callable[[str], None], cfg: LaunchConfig) -> list[str]:
    """One Ray task per cell (one GPU each where the cluster has GPUs), retried when its worker dies."""
    ray = _need("ray", "ray")
    if not ray.is_initialized():
        ray.init(address=None if cfg.ray_address == "local" else cfg.ray_address, ignore_reinit_error=True)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    task = ray.remote(num_gpus=1 if gpus else 0, num_cpus=cfg.cpus_per_run, max_retries=3)(_ray_cell)
    threads = None if gpus else cfg.cpus_per_run
    refs = {task.remote(str(out.resolve()), c.to_dict(), threads): c for c in cells}
    failed, busy = [], []
    for ref, c in refs.items():
        try:
            if ray.get(ref) == BUSY:
                busy.append(c)
        except Exception as e:
            failed.append(run_dir_for(out, c).name)
            log(f"{run_dir_for(out, c).name}: failed ({str(e).splitlines()[0] if str(e) else type(e).__name__})")
    return failed + _wait_for_others(out, busy, log)


def launch_cells(
    out: Path, cells: Sequence[TrainConfig], log: Callable[[str], None], launch: LaunchConfig, callbacks, data_for
) -> list[str] | None:
    """Hand ``cells`` to the launcher ``launch`` names; the names of the failed ones, or None where Slurm jobs were
    submitted and not waited for. ``callbacks`` and ``data_for`` serve the inline launcher, which trains here."""
    if launch.launcher == "inline":
        return run_inline(out, cells, log, callbacks, data_for)
    if launch.launcher == "local":
        return run_local(out, cells, log, launch.workers)
    if launch.launcher == "slurm":
        return run_slurm(out, cells, log, launch)
    return run_ray(out, cells, log, launch)


def write_report_if_done(study_dir: Path) -> Path | None:
    """The report, once every cell of the study has finished (the last worker to finish writes it). A folder of
    tuning trials (no study.json) has no report of its own: the study writes its report after the tuning phase."""
    from ..report.html import build_report

    if not (Path(study_dir) / STUDY_SPEC).exists():
        return None
    return None if unfinished_cells(study_dir) else build_report(study_dir)


def unfinished_cells(study_dir: Path) -> list[str]:
    from .status import study_cells

    return [c.name for c in study_cells(study_dir) if c.state != "finished"]

"""Launchers hand a study's unfinished cells to workers and wait (or, on Slurm, may return after submitting).
None of them schedules anything itself: the run folder is the unit that resumes, and its lock keeps two workers
off one cell."""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..config import TrainConfig
from ..engine.runtime import pace_note, short_reason
from ..errors import ConfigError
from ..layout import CHECKPOINTS_DIR, SLURM_DIR, STUDY_SPEC, run_dir_for
from . import events
from .cell import BUSY, train_cell

WAIT_FOR_OTHERS_S = 5.0  # how often a launcher looks again at cells another worker holds


@dataclass(frozen=True)
class LaunchConfig:
    launcher: str = "inline"  # inline | local | slurm | ray
    workers: int = 2  # local: processes on this machine
    slurm_partition: str | None = None
    slurm_account: str | None = None
    slurm_qos: str | None = None
    mem_gb: float | None = None  # slurm: memory per run
    gpus_per_run: int = 0
    cpus_per_run: int = 2
    timeout_min: int = 240  # per job; a job that runs out is requeued and resumes from its run folder
    max_parallel: int = 32  # array tasks at once
    slurm_options: dict = field(default_factory=dict)  # extra sbatch settings, KEY=VALUE
    wait: bool = False  # slurm: follow the jobs until they end instead of returning after submitting
    ray_address: str = "auto"


@dataclass(frozen=True)
class Batch:
    """What every launcher is handed: the cells to train into the study folder ``out``, where to say what happens,
    and the launch settings. ``callbacks`` (a factory) and ``data_for`` (the decoded data of a cell's data set)
    serve launchers that train in this process."""

    out: Path
    cells: Sequence[TrainConfig]
    log: Callable[[str], None]
    config: LaunchConfig
    callbacks: Callable[[], Sequence] = lambda: ()
    data_for: Callable[[TrainConfig], object] | None = None

    def name(self, cfg: TrainConfig) -> str:
        return run_dir_for(self.out, cfg).name


@dataclass(frozen=True)
class Launched:
    """What every launcher answers: the cells that failed, and whether the jobs were only submitted (Slurm without
    --wait: the last cell to finish writes the report)."""

    failed: tuple[str, ...] = ()
    submitted: bool = False


def check_launch(cfg: LaunchConfig) -> LaunchConfig:
    if cfg.launcher not in LAUNCHERS:
        raise ConfigError(f"Unknown launcher {cfg.launcher!r}: choose one of {', '.join(LAUNCHERS)}.")
    if cfg.workers < 1 or cfg.cpus_per_run < 1 or cfg.gpus_per_run < 0 or cfg.timeout_min < 1 or cfg.max_parallel < 1:
        raise ConfigError("--workers, --cpus-per-run, --timeout-min and --max-parallel must be positive.")
    if cfg.mem_gb is not None and not cfg.mem_gb > 0:
        raise ConfigError(f"--mem-per-run is memory per run in GB, above 0 (got {cfg.mem_gb!r}).")
    if cfg.launcher == "slurm":  # checked before the study writes anything, its protocol included
        _need("submitit", "slurm")
        _need_sbatch()
    elif cfg.launcher == "ray":
        _need("ray", "ray")
    return cfg


def _need_sbatch() -> None:
    """--launcher slurm submits with sbatch: without it submitit would quietly run the jobs as local processes."""
    import shutil

    if shutil.which("sbatch") is None:
        raise ConfigError(
            "--launcher slurm needs Slurm's sbatch, and there is none on this machine's PATH: run the command on a "
            "Slurm login node (or load the module that provides sbatch), or use --launcher local to train on this "
            "machine's cores."
        )


def _need(module: str, extra: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"--launcher {extra} needs the {module} package: pip install 'cnnbench[{extra}]'.") from None


def run_inline(batch: Batch) -> Launched:
    """One cell after another in this process, the data decoded once per data set."""
    out, cells, log = batch.out, batch.cells, batch.log
    busy, pace = [], []
    for i, cfg in enumerate(cells, 1):
        name = run_dir_for(out, cfg).name
        log(
            f"[{i}/{len(cells)}] {name}" + (" (resuming)" if (run_dir_for(out, cfg) / CHECKPOINTS_DIR).exists() else "")
        )
        started = time.perf_counter()
        data = batch.data_for(cfg) if batch.data_for else None
        if train_cell(out, cfg.to_dict(), callbacks=batch.callbacks(), data=data, log=log) == BUSY:
            busy.append(cfg)
            continue
        pace.append(time.perf_counter() - started)
        if i < len(cells):  # the cells of a grid differ in model, so this is a rough guide, said as such
            log(pace_note(sum(pace), len(pace), len(cells) - i))
    return Launched(tuple(_wait_for_others(out, busy, log)))


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
            except Exception as e:
                failed.append(run_dir_for(out, cfg).name)
                log(f"{run_dir_for(out, cfg).name}: failed ({short_reason(e)})")
        busy = still
    return failed


def _cell_process(study_dir: str, config: dict, threads: int | None, gpu: int | None, answer) -> None:
    """One cell in a process of its own (``answer``: a pipe for its outcome, or for why it failed)."""
    if gpu is not None:  # before CUDA starts in this process
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    try:
        answer.send(("outcome", train_cell(study_dir, config, threads)))
    except BaseException as e:  # recorded in events.jsonl by train_cell; the parent says it on the console
        answer.send(("failed", "interrupted" if isinstance(e, KeyboardInterrupt) else short_reason(e)))


def run_local(batch: Batch) -> Launched:
    """At most ``workers`` processes on this machine at once, one per cell: one GPU each where there are GPUs
    (CUDA_VISIBLE_DEVICES), else the cores shared out (threads per worker = cores / workers). A process per cell
    (not a pool) so that a worker killed from outside takes only its own cell down: the others go on, and the
    killed one is recorded as failed here, since it could not record anything itself."""
    import torch

    out, cells, log = batch.out, batch.cells, batch.log
    gpus = torch.cuda.device_count()
    workers = min(batch.config.workers, len(cells)) or 1
    threads = None if gpus else max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")  # fork would copy this process's threads and CUDA state
    free_gpus = [i % gpus for i in range(workers)] if gpus else []
    log(
        f"{len(cells)} runs on {workers} local workers"
        + (f", one GPU each of {gpus}" if gpus else f", {threads} threads each")
    )
    waiting, running, failed, busy = list(cells), {}, [], []
    try:
        while waiting or running:
            while waiting and len(running) < workers:
                cfg = waiting.pop(0)
                gpu = free_gpus.pop(0) if gpus else None
                receive, send = context.Pipe(duplex=False)
                process = context.Process(
                    target=_cell_process, args=(str(out), cfg.to_dict(), threads, gpu, send), daemon=False
                )
                process.start()
                send.close()  # the child holds its end: a dead child then reads as end of file here
                running[process.sentinel] = (process, cfg, gpu, receive)
            for sentinel in multiprocessing.connection.wait(list(running)):
                process, cfg, gpu, receive = running.pop(sentinel)
                process.join()
                if gpu is not None:
                    free_gpus.append(gpu)
                name = run_dir_for(out, cfg).name
                kind, detail = _answer_of(receive, process)
                if kind == "outcome":
                    if detail == BUSY:
                        busy.append(cfg)
                    log(f"{name}: {detail}")
                    continue
                failed.append(name)
                if kind == "killed":  # the process could not record its own end
                    events.record(out, name, "failed", reason=detail)
                log(f"{name}: failed ({detail})")
    except BaseException:
        for process, *_ in running.values():  # interrupted here: the workers got the same signal; let them save
            process.join()
        raise
    return Launched(tuple(failed + _wait_for_others(out, busy, log)))


def _answer_of(receive, process) -> tuple[str, str]:
    """("outcome", FINISHED | SKIPPED | BUSY), ("failed", reason) or ("killed", reason) for a finished process."""
    try:
        if receive.poll():
            return receive.recv()
    except (EOFError, OSError):
        pass
    finally:
        receive.close()
    code = process.exitcode
    how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
    return "killed", f"its worker process ended without finishing ({how})"


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


def run_slurm(batch: Batch, cluster: str | None = None) -> Launched:
    """One job-array task per cell; returns after submitting unless ``--wait``, then follows the jobs as they end.
    ``cluster``: submitit's cluster name ("local" runs the jobs as local processes, for tests)."""
    out, cells, log, cfg = batch.out, batch.cells, batch.log, batch.config
    submitit = _need("submitit", "slurm")
    if cluster is None:
        _need_sbatch()
    executor = submitit.AutoExecutor(folder=str(out / SLURM_DIR / "%j"), cluster=cluster)
    executor.update_parameters(**slurm_parameters(cfg, local=cluster == "local"))
    jobs = executor.map_array(SlurmCell(str(out)), [c.to_dict() for c in cells])
    log(
        f"submitted {len(jobs)} runs as job array {jobs[0].job_id.split('_')[0] if jobs else '-'}; "
        f"follow them with `cnnbench status {out}`"
    )
    if not cfg.wait:
        return Launched(submitted=True)
    by_job = {job.job_id: c for job, c in zip(jobs, cells)}
    failed = []
    for job in submitit.helpers.as_completed(jobs, poll_frequency=2):
        name = batch.name(by_job[job.job_id])
        try:
            log(f"{name}: {job.result()}")
        except Exception as e:
            failed.append(name)
            log(f"{name}: failed ({_first_line(e)}); Slurm job {job.job_id}, its log: {job.paths.stderr}")
    return Launched(tuple(failed))


def slurm_parameters(cfg: LaunchConfig, local: bool = False) -> dict:
    """The launch settings as submitit's parameters (each becomes an #SBATCH line; ``local``: submitit's local
    executor, which takes the resource settings only)."""
    params = {
        "timeout_min": cfg.timeout_min,
        "cpus_per_task": cfg.cpus_per_run,
        "slurm_array_parallelism": cfg.max_parallel,
    }
    if cfg.gpus_per_run:
        params["gpus_per_node"] = cfg.gpus_per_run
    for key, value in (
        ("slurm_partition", cfg.slurm_partition),
        ("slurm_account", cfg.slurm_account),
        ("slurm_qos", cfg.slurm_qos),
        ("mem_gb", cfg.mem_gb),
    ):
        if value:
            params[key] = value
    if cfg.slurm_options:
        params["slurm_additional_parameters"] = dict(cfg.slurm_options)
    return {k: v for k, v in params.items() if not k.startswith("slurm")} if local else params


def _first_line(e: BaseException) -> str:
    """The error a job raised, from the text submitit wraps it in (its traceback follows in the job's log)."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    cause = next((line for line in reversed(lines) if "Error:" in line or "error:" in line), None)
    return cause or (lines[0] if lines else type(e).__name__)


def _ray_cell(study_dir: str, config: dict, threads: int | None) -> str:
    if not Path(study_dir).is_dir():
        raise ConfigError(
            f"This Ray worker cannot see the study folder {study_dir}: with --launcher ray the study must be on "
            "storage every node mounts at the same path (a shared file system), not on one machine's disk."
        )
    return train_cell(study_dir, config, threads)


def run_ray(batch: Batch) -> Launched:
    """One Ray task per cell (one GPU each where the cluster has GPUs), retried when its worker dies; results taken
    as the tasks end."""
    out, cells, log, cfg = batch.out, batch.cells, batch.log, batch.config
    ray = _need("ray", "ray")
    if not ray.is_initialized():
        ray.init(address=None if cfg.ray_address == "local" else cfg.ray_address, ignore_reinit_error=True)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    task = ray.remote(num_gpus=1 if gpus else 0, num_cpus=cfg.cpus_per_run, max_retries=3)(_ray_cell)
    threads = None if gpus else cfg.cpus_per_run
    refs = {task.remote(str(out.resolve()), c.to_dict(), threads): c for c in cells}
    pending, failed, busy = list(refs), [], []
    while pending:
        (ref,), pending = ray.wait(pending, num_returns=1)
        c = refs[ref]
        try:
            outcome = ray.get(ref)
        except Exception as e:
            failed.append(batch.name(c))
            log(f"{batch.name(c)}: failed ({short_reason(e)})")
            continue
        if outcome == BUSY:
            busy.append(c)
        log(f"{batch.name(c)}: {outcome}")
    return Launched(tuple(failed + _wait_for_others(out, busy, log)))


# Every launcher: a Batch in, a Launched out. `--launcher NAME` picks one by name.
LAUNCHERS: dict[str, Callable[[Batch], Launched]] = {
    "inline": run_inline,
    "local": run_local,
    "slurm": run_slurm,
    "ray": run_ray,
}


def launch_cells(batch: Batch) -> Launched:
    """Hand the batch's cells to the launcher its settings name."""
    return LAUNCHERS[batch.config.launcher](batch)


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

"""The training loop: ``fit(config, out)`` trains one model on one data set into a self-contained run folder."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch
import torch.nn as nn

from ..config import TrainConfig, config_differences, validate
from ..data.loader import Augment, Dataset, load_dataset, train_batches
from ..errors import ConfigError, DataError, TrainingError
from ..fileio import read_json, write_json, write_text
from ..layout import CHECKPOINTS_DIR, CONFIG_JSON, SUMMARY, TEST_FILES
from ..models import create_model, min_input_size, resolve_variant
from ..models.complexity import count_flops, count_params
from ..models.small_maps import use_small_map_convolutions
from .averaging import WeightAverage
from .callbacks import Callback
from .compiled import compile_before_training
from .distributed import all_reduce_sum, barrier, init_distributed
from .evaluate import evaluate, flip_tta_top1
from .interrupt import TrainingInterrupted
from .memory import PeakMemory
from .optim import make_optimizer, steps_per_epoch
from .precise_bn import precise_bn_pass
from .pretrained import (
    apply_pretrained,
    freeze_body,
    keep_frozen_statistics,
    load_pretrained,
    normalization_for,
)
from .records import epoch_row, finish, save_predictions, write_epoch_files
from .run import PartialEpoch, Run, TrainingState
from .run_folder import preprocessing_of, write_preprocessing
from .runtime import (
    autocast,
    begin_compiled_step,
    compile_model,
    device_name,
    resolve_device,
    resolve_precision,
    restored_torch_state,
    synchronize,
)
from .schedules import lr_multiplier
from .state import restore_state, save_state

CHECK_EVERY_GPU = 25  # default steps between loss checks on a GPU: .item() waits for the queued kernels


def training_augment(cfg: TrainConfig) -> Augment | None:
    return Augment(crop_padding=cfg.crop_padding, flip=True, cutout=cfg.cutout) if cfg.augment else None


def _check_fits(cfg: TrainConfig, data: Dataset) -> None:
    if data.num_classes < 2:
        raise DataError(
            f"{data.name} has {data.num_classes} class ({', '.join(data.classes) or 'none'}): a classifier needs at "
            "least two, or every prediction is trivially right. Add a folder per class (at least two)."
        )
    need = min_input_size(cfg.model)
    h, w = data.train_x.shape[-2:]
    if min(h, w) < need:
        raise DataError(
            f"{data.name} images are {h}x{w} pixels, but {cfg.model} needs at least {need}x{need} (it halves the "
            f"image five times). Resize the images with --resize {need}, or zero-pad them with --pad-to {need}."
        )
    if cfg.batch_size > len(data.train_y):
        raise ConfigError(
            f"--batch-size {cfg.batch_size} is larger than the training set ({len(data.train_y)} images). "
            f"Use a batch size of at most {len(data.train_y)}, or more training data."
        )


def resolved_config(cfg: TrainConfig, variant: str, precision: str, device: torch.device) -> TrainConfig:
    return cfg.replace(variant=variant, precision=precision, device=device.type)


def _check_resume_config(saved: dict, current: TrainConfig, out: Path) -> None:
    changes = config_differences(saved, current)
    if changes:
        raise ConfigError(
            f"Cannot resume {out} with different settings ({changes}). Resume with the run's own settings "
            "(leave the options out), or start a new run in another --out folder."
        )


@dataclass
class EpochTally:
    """Running sums of one epoch's training (on the device: adding to them never waits for a GPU)."""

    loss_sum: torch.Tensor
    correct: torch.Tensor
    seen: int = 0
    time_s: float = 0.0  # time spent in this epoch before a resume

    @classmethod
    def start(cls, device: torch.device, partial: PartialEpoch | None) -> EpochTally:
        if partial is None:
            return cls(
                torch.zeros((), device=device, dtype=torch.float64), torch.zeros((), device=device, dtype=torch.int64)
            )
        return cls(
            torch.full((), partial.loss_sum, device=device, dtype=torch.float64),
            torch.full((), partial.correct, device=device, dtype=torch.int64),
            partial.seen,
            partial.time_s,
        )

    def add(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        self.loss_sum += loss.detach().double() * len(y)
        self.correct += (logits.detach().argmax(1) == y).sum()
        self.seen += len(y)


def train_one_epoch(run: Run, step_model: nn.Module, criterion: nn.Module, callbacks: Sequence[Callback]) -> dict:
    """One pass over the training split; returns mean loss, accuracy, images, time and final learning rate.

    After Ctrl-C it stops at the end of the current step, records its progress in ``run.state.partial`` and raises
    TrainingInterrupted; a resumed run replays the epoch's batch order and skips the steps already taken.
    """
    cfg, device, ctx = run.config, run.device, run.dist
    augment = training_augment(cfg)
    steps = steps_per_epoch(len(run.data.train_y), cfg.batch_size, ctx.world_size)
    partial, run.state.partial = run.state.partial, None
    if partial:
        run.generator.set_state(partial.generator)
    epoch_start_generator = run.generator.get_state()
    done = partial.step if partial else 0
    for cb in callbacks:
        cb.on_epoch_start(run, run.state.epoch + 1, steps)
    run.model.train()
    if cfg.freeze_backbone:
        keep_frozen_statistics(run.model)
    check_every = cfg.check_every or (1 if device.type == "cpu" else CHECK_EVERY_GPU)
    tally = EpochTally.start(device, partial)
    t0 = time.perf_counter()
    batches = train_batches(
        run.data, cfg.batch_size, run.generator, augment, cfg.channels_last, ctx.rank, ctx.world_size
    )
    for step, (x, y) in enumerate(batches, start=1):
        if step <= done:  # already trained before the interruption; drawing the batch keeps the RNG in step
            continue
        loss, logits = _train_step(run, step_model, criterion, x, y)
        tally.add(loss, logits, y)
        for cb in callbacks:  # a tensor: a callback that needs the number pays the host sync itself, when it needs it
            cb.on_step_end(run, run.state.epoch + 1, step, loss.detach())
        if step % check_every == 0 or step == steps:
            _check_finite(run, loss, step)
        if run.stop.requested and step < steps and not ctx.enabled:
            run.state.partial = PartialEpoch(
                step,
                epoch_start_generator,
                tally.loss_sum.item(),
                int(tally.correct.item()),
                tally.seen,
                tally.time_s + time.perf_counter() - t0,
            )
            raise run.stop.interrupted()
    synchronize(device)
    elapsed = tally.time_s + time.perf_counter() - t0
    loss_total, correct_total, seen_total = all_reduce_sum(
        [tally.loss_sum.item(), float(tally.correct.item()), float(tally.seen)], ctx
    )
    return {
        "train_loss": loss_total / max(seen_total, 1),
        "train_acc": correct_total / max(seen_total, 1),
        "images": int(seen_total),
        "time_s": elapsed,
        "lr": run.optimizer.param_groups[0]["lr"],
    }


def _train_step(run: Run, step_model: nn.Module, criterion: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """Forward, backward, optimizer and schedule step; the loss and logits (not yet read from the device)."""
    if run.config.compile:
        begin_compiled_step(run.config.compile_mode)
    with autocast(run.device, run.precision):
        logits = step_model(x)
        loss = criterion(logits, y)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()
    if run.average is not None:
        run.average.update(run.model)
    return loss, logits


def _check_finite(run: Run, loss: torch.Tensor, step: int) -> None:
    """Stop with advice when the loss is not finite. Under DDP the mean over processes: a NaN on one rank then
    stops every rank at the same step (a lone rank stopping would leave the others waiting in an all-reduce)."""
    value = all_reduce_sum([loss.item()], run.dist)[0] / run.dist.world_size
    if not math.isfinite(value):
        kept = (
            f"The last good checkpoint (epoch {run.state.epoch}) is kept in {run.out / 'checkpoints'}. "
            if run.state.epoch
            else "No epoch had finished, so there is no checkpoint to keep. "
        )
        raise TrainingError(
            f"The training loss became {value} at epoch {run.state.epoch + 1}, step {step}: training diverged. {kept}"
            f"Try a lower learning rate (for example --lr {run.config.lr / 10:g})."
        )


def _out_of_memory(e: BaseException) -> bool:
    """CUDA and MPS raise torch.OutOfMemoryError; the CPU allocator raises a plain RuntimeError (PyTorch gives it no
    class of its own), recognised by the allocator's name at the start of its message."""
    return isinstance(e, (torch.OutOfMemoryError, MemoryError)) or (
        type(e) is RuntimeError and "DefaultCPUAllocator: can't allocate memory" in str(e)
    )


def setup(cfg: TrainConfig, out: Path, resume: bool, data: Dataset | None = None) -> Run:
    cfg = validate(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    device = resolve_device(cfg.device)
    ctx = init_distributed(device.type)
    if device.type == "cuda" and ctx.enabled:
        device = torch.device("cuda", ctx.local_rank)
    if device.type == "cuda" and not cfg.deterministic:
        torch.backends.cudnn.benchmark = True
    precision = resolve_precision(cfg.precision, device)
    if data is None:
        data = load_dataset(cfg.dataset, cfg.data_dir, cfg.data_options())
    _check_fits(cfg, data)
    weights = load_pretrained(cfg.pretrained, cfg.model) if cfg.pretrained else None
    if weights is not None:  # the images are normalised as the weights' own training data was
        data = data.normalized_by(*normalization_for(weights, data.in_chans))
    data = data.to(device)
    auto = weights.variant if weights is not None and weights.variant and cfg.variant == "auto" else cfg.variant
    variant = resolve_variant(auto, data.image_size)
    cfg = resolved_config(cfg, variant, precision, device)
    if resume and (out / CONFIG_JSON).exists():
        _check_resume_config(read_json(out / CONFIG_JSON), cfg, out)

    torch.manual_seed(cfg.seed)
    model = create_model(
        cfg.model, num_classes=data.num_classes, in_chans=data.in_chans, variant=variant, width=cfg.width
    )
    if weights is not None:
        apply_pretrained(model, weights)
        if cfg.freeze_backbone:
            freeze_body(model)
    params = count_params(model)
    flops = count_flops(model, tuple(data.train_x.shape[1:]))
    model = model.to(device, memory_format=torch.channels_last if cfg.channels_last else torch.contiguous_format)
    if device.type == "cpu" and cfg.small_map_matmul:  # oneDNN is slow on small maps: 3x3 convolutions as matmuls
        use_small_map_convolutions(model)
    optimizer = make_optimizer(cfg, model)
    average = WeightAverage(model, cfg.ema) if cfg.ema else None
    per_epoch = steps_per_epoch(len(data.train_y), cfg.batch_size, ctx.world_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_multiplier(cfg.schedule, cfg.epochs * per_epoch, cfg.warmup_fraction, cfg.lr_update, per_epoch)
    )
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    generator = torch.Generator().manual_seed(cfg.seed + 1)
    return Run(
        config=cfg,
        out=out,
        data=data,
        model=model,
        variant=variant,
        device=device,
        precision=precision,
        device_name=device_name(device),
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        generator=generator,
        params=params,
        flops=flops,
        memory=PeakMemory(device),
        state=TrainingState(start_time=str(datetime.now())),
        dist=ctx,
        pretrained=weights.description if weights is not None else None,
        average=average,
    )


def fit(
    config: TrainConfig,
    out: str | Path,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
    data: Dataset | None = None,
) -> dict:
    """Train ``config.model`` on ``config.dataset`` into the run folder ``out`` and return its summary.

    With ``resume``, continue from ``out/checkpoints`` (a finished run returns its summary unchanged). Global
    torch settings the run changes (threads, deterministic algorithms, cudnn.benchmark) are restored afterwards.
    """
    with restored_torch_state():
        return _fit(config, Path(out), resume, callbacks, data)


def _fit(config: TrainConfig, out: Path, resume: bool, callbacks: Sequence[Callback], data: Dataset | None) -> dict:
    check_output_folder(out)
    if not resume and ((out / CHECKPOINTS_DIR).exists() or (out / SUMMARY).exists()):
        raise ConfigError(f"{out} already holds a run. Pass --resume to continue it, or choose another --out folder.")
    if resume and (out / SUMMARY).exists():
        if (out / CONFIG_JSON).exists():  # a finished run answers only for the settings it was trained with
            _check_resume_config(read_json(out / CONFIG_JSON), validate(config), out)
        return read_json(out / SUMMARY)
    run = setup(config, out, resume, data)
    callbacks = tuple(callbacks) if run.dist.is_main else ()
    if resume:
        restore_state(run, callbacks)
    if run.dist.is_main:
        write_json(out / CONFIG_JSON, run.config.to_dict())
        write_preprocessing(out, preprocessing_of(run.data, run.config))  # so an unfinished run can be evaluated
        if run.data.test_files:  # cnnbench chose the test images itself: say which, so anyone can check or reuse them
            write_text(out / TEST_FILES, "".join(f"{name}\n" for name in run.data.test_files))
    step_model = _step_model(run)
    if run.config.compile:
        step_model = compile_before_training(
            run, compile_model(step_model, run.config.compile_mode), step_model, nn.CrossEntropyLoss()
        )
    criterion = nn.CrossEntropyLoss(label_smoothing=run.config.label_smoothing)
    try:
        for cb in callbacks:
            cb.on_train_start(run)
        with run.stop, run.memory:
            while run.state.epoch < run.config.epochs:
                _train_and_record_epoch(run, step_model, criterion, callbacks)
    except BaseException as e:
        if isinstance(e, TrainingInterrupted) and run.state.partial is not None:
            save_state(run, callbacks)  # mid-epoch: keep the partial epoch, replayed exactly on resume
        for cb in callbacks:  # release what they hold (hooks, writers) whatever stopped the run
            cb.on_exception(run, e)
        if _out_of_memory(e):
            raise TrainingError(
                f"Out of memory at batch size {run.config.batch_size} on {run.device_name}. Use a smaller --batch-size "
                f"(for example {max(1, run.config.batch_size // 2)}); finished epochs are kept in {out}."
            ) from None
        raise
    summary = finish(run) if run.dist.is_main else {}
    barrier(run.dist)
    for cb in callbacks:
        cb.on_train_end(run, summary)
    return summary


def _step_model(run: Run) -> nn.Module:
    """The module the steps call: the model, wrapped for DDP where it runs (its weights stay shared)."""
    step_model = run.model
    if run.dist.enabled:
        device_ids = [run.device.index] if run.device.type == "cuda" else None
        step_model = nn.parallel.DistributedDataParallel(run.model, device_ids=device_ids)
    return step_model


def check_output_folder(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(
            f"--out {out} is an existing file, not a folder; nothing was written. Give a folder path "
            "(new or holding a run), or move the file away."
        )


def _train_and_record_epoch(
    run: Run, step_model: nn.Module, criterion: nn.Module, callbacks: Sequence[Callback]
) -> None:
    """Train one epoch, evaluate, record the row and checkpoint; stop here if Ctrl-C asked for it."""
    cfg = run.config
    stats = train_one_epoch(run, step_model, criterion, callbacks)
    stats["time_s"] += _precise_bn(run)
    test = _evaluate_split(run, run.data.test_x, run.data.test_y)
    val = _evaluate_split(run, run.data.val_x, run.data.val_y) if run.data.val_x is not None else None
    run.state.epoch += 1
    row = epoch_row(run.state.epoch, stats, test, len(run.data.test_y), run.memory.peak_mb(), val)
    run.state.rows.append(row)
    if run.dist.is_main:
        if run.state.epoch == cfg.epochs:  # predictions before the checkpoint, so a finished checkpoint implies them
            save_predictions(run, test["logits"])
            if run.data.natural:  # flips are label-preserving: report flip test-time augmentation beside top-1
                run.notes.test_top1_tta = flip_tta_top1(
                    run.evaluated_model,
                    run.data.test_x,
                    run.data.test_y,
                    test["logits"],
                    run.data,
                    run.device,
                    run.precision,
                    cfg.eval_batch_size,
                    cfg.channels_last,
                )
        save_state(run, callbacks)
        write_epoch_files(run)
    for cb in callbacks:
        cb.on_epoch_end(run, row)
    if run.stop.requested and run.state.epoch < cfg.epochs:
        raise run.stop.interrupted()


def _precise_bn(run: Run) -> float:
    """Recompute batch-norm statistics before the evaluation (config.precise_bn); returns the seconds it took,
    which count as training time."""
    if run.config.freeze_backbone:  # a frozen body keeps its pretrained statistics
        return 0.0
    start = time.perf_counter()
    if precise_bn_pass(
        run.evaluated_model,
        run.data,
        run.config,
        training_augment(run.config),
        run.state.epoch,
        run.device,
        run.precision,
        run.dist,
    ):
        synchronize(run.device)
    return time.perf_counter() - start


def _evaluate_split(run: Run, x: torch.Tensor, y: torch.Tensor) -> dict:
    cfg = run.config
    return evaluate(
        run.evaluated_model, x, y, run.data, run.device, run.precision, cfg.eval_batch_size, cfg.channels_last
    )

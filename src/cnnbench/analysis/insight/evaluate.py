"""``cnnbench insight RUN_DIR|STUDY_DIR``: what a trained network learned, written into the run folder's insight/.

Per run: the first layer's filters over the epochs, each stage's feature maps for fixed test images, Grad-CAM over
correctly and wrongly classified test images, linear CKA between the model's stages, and loss-landscape slices.
Per study: CKA between the stages of every two models trained on the same data set with the same seed, on the same
test images. Figures are drawn by the report from the tables written here (the report never loads a model).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ...data.loader import balanced_indices, eval_batches, normalize
from ...engine.checkpoint import load_file
from ...engine.evaluate_run import load_run_model
from ...engine.runtime import duration_text, eval_mode, pace_note, resolve_device
from ...errors import ConfigError
from ...fileio import write_csv, write_json, write_npz
from ...layout import DYNAMICS_CSV, FILTERS_NPZ, INIT_WEIGHTS, INSIGHT_DIR, INSIGHT_JSON, run_dirs_of, study_cka_csv
from .cka import cka_matrix, stage_grams
from .gradcam import grad_cam
from .landscape import filter_normalized_direction, loss_along, trained_params
from .stages import check_layer, default_cam_layer, first_filters, model_stages, stage_of, weight_layers

LANDSCAPES = ("none", "1d", "2d")


@dataclass(frozen=True)
class InsightConfig:
    layer: str | None = None  # Grad-CAM layer; None: the last one with a spatial map larger than 1x1
    images: int = 8  # test images per Grad-CAM panel (correct and wrong) and 2 of them for feature maps
    cka_images: int = 500  # class-balanced test images for CKA (the same for every model)
    landscape: str = "1d"  # none | 1d (a random direction and the init -> final line) | 2d (adds a grid)
    landscape_images: int = 1000  # class-balanced training images the landscape's loss is computed on
    landscape_points: int = 21  # points per 1-D slice (the 2-D grid uses points // 2 + 1 per side)
    seed: int = 0  # seeds the random directions
    device: str = "auto"


def check_insight_config(cfg: InsightConfig) -> InsightConfig:
    if cfg.landscape not in LANDSCAPES:
        raise ConfigError(f"--landscape must be one of {', '.join(LANDSCAPES)} (got {cfg.landscape!r}).")
    for name in ("images", "cka_images", "landscape_images", "landscape_points"):
        if getattr(cfg, name) < 2:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 2 (got {getattr(cfg, name)}).")
    return cfg


def cka_test_images(data, n: int) -> torch.Tensor:
    """The same class-balanced test images for every model trained on this data set."""
    return data.test_x[torch.from_numpy(balanced_indices(data.test_y.cpu().numpy(), min(n, len(data.test_y))))]


def _feature_maps(model, stages, x: torch.Tensor) -> dict[str, np.ndarray]:
    """Each stage's output for the images ``x``: the 8 channels with the largest mean activation per image."""
    modules = dict(model.named_modules())
    maps: dict[str, torch.Tensor] = {}
    handles = [
        modules[s.output].register_forward_hook(lambda _m, _i, out, n=s.name: maps.__setitem__(n, out.float()))
        for s in stages
    ]
    try:
        with torch.inference_mode(), eval_mode(model):
            model(x)
    finally:
        for h in handles:
            h.remove()
    out = {}
    for name, fm in maps.items():
        top = fm.mean((2, 3)).argsort(1, descending=True)[:, :8]
        out[name] = torch.stack([fm[i, top[i]] for i in range(len(fm))]).cpu().numpy()
    return out


def _gradcam_examples(model, layer: str, data, n: int) -> dict[str, np.ndarray]:
    """Grad-CAM of the predicted class over the first ``n`` correctly and ``n`` wrongly classified test images."""
    picked, preds = {"correct": [], "wrong": []}, {}
    batch = 500
    with torch.inference_mode(), eval_mode(model):
        for b, (xb, yb) in enumerate(eval_batches(data.test_x, data.test_y, data, batch, channels_last=False)):
            p = model(xb).argmax(1)
            for i, (pred, ok) in enumerate(zip(p.tolist(), (p == yb).tolist())):
                key = "correct" if ok else "wrong"
                if len(picked[key]) < n:
                    picked[key].append(b * batch + i)
                    preds[b * batch + i] = pred
            if all(len(v) >= n for v in picked.values()):
                break
    result = {}
    for key, index in picked.items():
        if not index:
            continue
        at = torch.tensor(index, device=data.test_x.device)
        images = data.test_x[at]
        result[f"{key}_images"] = images.cpu().numpy()
        result[f"{key}_cams"] = grad_cam(model, layer, normalize(images, data.mean, data.std, False)).numpy()
        result[f"{key}_true"] = data.test_y[at].cpu().numpy()
        result[f"{key}_pred"] = np.array([preds[i] for i in index])
    return result


def _landscape(model, run_dir: Path, data, init: dict | None, cfg: InsightConfig, log) -> list[dict]:
    idx = torch.from_numpy(balanced_indices(data.train_y.cpu().numpy(), min(cfg.landscape_images, len(data.train_y))))
    idx = idx.to(data.train_y.device)
    images, labels = data.train_x[idx], data.train_y[idx]
    generator = torch.Generator().manual_seed(cfg.seed)
    final = trained_params(model)
    alphas = np.linspace(-1.0, 1.0, cfg.landscape_points)
    d1 = filter_normalized_direction(model, generator)
    started = time.perf_counter()
    rows = [
        {"slice": "direction", "x": float(a), "y": 0.0, "loss": loss}
        for a, loss in zip(alphas, loss_along(model, final, [d1], [(float(a),) for a in alphas], images, labels, data))
    ]
    more = (cfg.landscape_points if init is not None else 0) + (
        (cfg.landscape_points // 2 + 1) ** 2 if cfg.landscape == "2d" else 0
    )
    if more:  # the first slice timed the cost of one point
        each = (time.perf_counter() - started) / len(alphas)
        log(f"  {run_dir.name}: about {duration_text(each * more)} for the landscape's other {more} points")
    if init is not None:
        device = next(model.parameters()).device
        start = {n: init[n].to(device, p.dtype) for n, p in final.items()}
        line = {n: final[n] - start[n] for n in final}
        ts = np.linspace(-0.25, 1.25, cfg.landscape_points)
        losses = loss_along(
            model, start, [line], [(float(t),) for t in ts], images, labels, data, batch_statistics=True
        )
        rows += [{"slice": "init_to_final", "x": float(t), "y": 0.0, "loss": loss} for t, loss in zip(ts, losses)]
    else:
        log(f"  {run_dir.name}: no {INIT_WEIGHTS} (trained without --dynamics), so no init -> final line")
    if cfg.landscape == "2d":
        d2 = filter_normalized_direction(model, generator)
        side = np.linspace(-1.0, 1.0, cfg.landscape_points // 2 + 1)
        grid = [(float(a), float(b)) for b in side for a in side]
        rows += [
            {"slice": "plane", "x": a, "y": b, "loss": loss}
            for (a, b), loss in zip(grid, loss_along(model, final, [d1, d2], grid, images, labels, data))
        ]
    return rows


def weights_vs_init(model, init_state: dict, stages) -> list[dict]:
    """Per convolution and linear layer: the norms of the initial and trained weights and the cosine between them
    (1: the layer kept its initial direction and only rescaled; near 0: it moved far from where it started)."""
    rows = []
    for name, module in weight_layers(model):
        w0 = init_state[f"{name}.weight"].flatten().double()
        w = module.weight.detach().flatten().double().cpu()
        cosine = float(w0 @ w / (w0.norm() * w.norm()).clamp_min(1e-300))
        rows.append(
            {
                "layer": name,
                "stage": stage_of(name, stages),
                "init_norm": float(w0.norm()),
                "final_norm": float(w.norm()),
                "cosine": cosine,
            }
        )
    return rows


def _cka_rows(matrix: np.ndarray, rows: list[str], cols: list[str]) -> list[dict]:
    """cka.csv's rows: one per stage of the first model, a column per stage of the second."""
    return [{"stage": a, **{b: f"{matrix[i, j]:.6f}" for j, b in enumerate(cols)}} for i, a in enumerate(rows)]


def run_insight(
    run_dir: str | Path,
    cfg: InsightConfig = InsightConfig(),
    log: Callable[[str], None] = print,
    keep_grams: bool = False,
) -> dict:
    """Write insight/ into ``run_dir``; return insight.json's content (with the CKA Gram matrices under
    ``"grams"`` when ``keep_grams``, for comparing models in a study)."""
    run_dir = Path(run_dir)
    cfg = check_insight_config(cfg)
    device = resolve_device(cfg.device)
    run, data = load_run_model(run_dir, device, full_test_set=True)
    train_cfg, model, epoch = run.config, run.model, run.epoch
    data = data.to(device)  # once: every step below reads images on the model's device
    model = model.float().to(memory_format=torch.contiguous_format)
    stages = model_stages(model)
    init_path = run_dir / INIT_WEIGHTS
    init = load_file(init_path) if init_path.exists() else None
    layer = cfg.layer or default_cam_layer(model, normalize(data.test_x[:1], data.mean, data.std, False))
    check_layer(model, layer)
    out = run_dir / INSIGHT_DIR
    notes = []
    if not (run_dir / DYNAMICS_CSV).exists():
        notes.append(
            "No dynamics.csv: this run trained without --dynamics, so there are no per-layer update curves, "
            "no filter snapshots over the epochs and no init -> final line. Retrain with --dynamics to get them."
        )
    if not (run_dir / FILTERS_NPZ).exists():
        write_npz(run_dir / FILTERS_NPZ, **{f"epoch_{epoch}": first_filters(model)})
    log(f"{run_dir.name}: feature maps, Grad-CAM at {layer}")
    examples = data.test_x[:2]
    maps = _feature_maps(model, stages, normalize(examples, data.mean, data.std, False))
    write_npz(out / "feature_maps.npz", images=examples.cpu().numpy(), **maps)
    write_npz(out / "gradcam.npz", classes=np.array(data.classes), **_gradcam_examples(model, layer, data, cfg.images))
    log(f"{run_dir.name}: CKA between stages on {min(cfg.cka_images, len(data.test_y))} test images")
    grams = stage_grams(model, [s.output for s in stages], cka_test_images(data, cfg.cka_images), data)
    grams = {s.name: grams[s.output] for s in stages}
    write_csv(out / "cka.csv", _cka_rows(cka_matrix(grams, grams), list(grams), list(grams)), ["stage", *grams])
    landscape = []
    if cfg.landscape != "none":
        log(
            f"{run_dir.name}: loss landscape ({cfg.landscape}) on "
            f"{min(cfg.landscape_images, len(data.train_y))} training images"
        )
        landscape = _landscape(model, run_dir, data, init, cfg, log)
        write_csv(out / "landscape.csv", landscape, ["slice", "x", "y", "loss"])
    moved = weights_vs_init(model, init, stages) if init is not None else []
    result = {
        "model": train_cfg.model,
        "dataset": data.name,
        "seed": train_cfg.seed,
        "epoch": epoch,
        "weights": run.weights,
        "weights_vs_init": moved,
        "gradcam_layer": layer,
        "stages": [s.name for s in stages],
        "cka_images": min(cfg.cka_images, len(data.test_y)),
        "landscape_images": min(cfg.landscape_images, len(data.train_y)),
        "settings": asdict(cfg),
        "notes": notes,
    }
    write_json(run_dir / INSIGHT_JSON, result)
    return {**result, "grams": grams} if keep_grams else result


def study_insight(
    study_dir: str | Path, cfg: InsightConfig = InsightConfig(), log: Callable[[str], None] = print
) -> list[Path]:
    """Every run's insight, then CKA between the stages of each pair of models with the same data set and seed."""
    study_dir = Path(study_dir)
    run_dirs = run_dirs_of(study_dir)
    if not run_dirs:
        raise ConfigError(f"{study_dir} holds no run folders: run `cnnbench compare --out {study_dir}` first.")
    results, started = [], time.perf_counter()
    for i, run_dir in enumerate(run_dirs, 1):
        results.append(run_insight(run_dir, cfg, log, keep_grams=True))
        if i < len(run_dirs):
            log(pace_note(time.perf_counter() - started, i, len(run_dirs) - i))
    written = []
    for i, a in enumerate(results):
        for b in results[i + 1 :]:
            if (a["dataset"], a["seed"]) != (b["dataset"], b["seed"]) or a["model"] == b["model"]:
                continue
            rows = _cka_rows(cka_matrix(a["grams"], b["grams"]), list(a["grams"]), list(b["grams"]))
            written.append(
                write_csv(
                    study_cka_csv(study_dir, a["dataset"], a["seed"], a["model"], b["model"]),
                    rows,
                    ["stage", *b["grams"]],
                )
            )
    return written

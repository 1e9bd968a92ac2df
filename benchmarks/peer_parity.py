"""Peer parity: cnnbench's engine against a plain PyTorch loop written as the most copied CIFAR-10 script writes it.

The plain loop follows kuangliu/pytorch-cifar's ``main.py`` step for step: PIL images through torchvision's
``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip``, ``ToTensor`` and ``Normalize`` (that script's constants), a
shuffled ``DataLoader``, ``SGD(model.parameters(), momentum=0.9, weight_decay=5e-4)`` (plain momentum, decay on every
parameter), ``CosineAnnealingLR(T_max=epochs)`` stepped once per epoch, fp32, NCHW. Both loops train the same network
(``create_model``) from the same initial weights on the same class-balanced slice, and are scored on the same test
images. cnnbench states the same recipe with ``--no-nesterov --decay all --lr-update epoch`` (recipe ``peer``), and
the warmed-up variant with a linear warm-up over the first epoch, per step, in both loops (recipe ``warmup``). A
third loop, ``cnnbench-defaults``, trains the same recipe with cnnbench's own choices where a recipe leaves them open
(Nesterov, decay on weights only, a per-step schedule), to measure which is better.

    python benchmarks/peer_parity.py --seeds 0,1,2 --recipes peer,warmup --width 0.5 --out bench-runs/peer-parity

Each result is a JSON line in ``--out/results.jsonl``; finished (loop, recipe, seed) results are kept and skipped on a
rerun, so an interrupted benchmark resumes. The summary gives, per recipe, the mean difference cnnbench - plain with
a 95% t interval over seeds (paired by seed: same initial weights) and the speed ratio.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from cnnbench import TrainConfig, fit
from cnnbench.data.loader import load_dataset
from cnnbench.data.options import DataOptions
from cnnbench.fileio import read_csv
from cnnbench.layout import METRICS_CSV
from cnnbench.models import create_model

PEER_MEAN, PEER_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)  # kuangliu/pytorch-cifar's constants
RECIPES = {
    # kuangliu's recipe as published: no warm-up, cosine per epoch, plain momentum, decay on everything
    "peer": {"warmup_epochs": 0},
    # the same with one epoch of linear warm-up, per step (what cnnbench's own recipes do)
    "warmup": {"warmup_epochs": 1},
}


def peer_multiplier(epochs: int, steps: int, warmup_epochs: int):
    """The plain loop's schedule, written here independently of cnnbench's: per epoch without warm-up (as the
    script steps ``CosineAnnealingLR``), per step with a linear warm-up."""
    if warmup_epochs == 0:
        return lambda s: 0.5 * (1 + math.cos(math.pi * (s // steps) / epochs))
    warm, total = warmup_epochs * steps, epochs * steps
    return lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / (total - warm)))


def plain_loop(data, args, recipe: dict, seed: int) -> dict:
    """kuangliu's train() and test(), on PIL images made from the same uint8 tensors cnnbench trains on."""
    import torchvision.transforms as T
    from PIL import Image

    train_tf = T.Compose(
        [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(PEER_MEAN, PEER_STD)]
    )
    test_tf = T.Compose([T.ToTensor(), T.Normalize(PEER_MEAN, PEER_STD)])

    class Images(torch.utils.data.Dataset):
        def __init__(self, x, y, tf):
            self.images = [Image.fromarray(im) for im in x.permute(0, 2, 3, 1).numpy()]
            self.y, self.tf = y.tolist(), tf

        def __len__(self):
            return len(self.y)

        def __getitem__(self, i):
            return self.tf(self.images[i]), self.y[i]

    torch.manual_seed(seed)
    net = create_model(args.model, num_classes=10, in_chans=3, variant="small", width=args.width)
    g = torch.Generator().manual_seed(seed + 1)
    train_loader = torch.utils.data.DataLoader(
        Images(data.train_x, data.train_y, train_tf), batch_size=args.batch_size, shuffle=True, generator=g
    )
    test_loader = torch.utils.data.DataLoader(Images(data.test_x, data.test_y, test_tf), batch_size=256)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, peer_multiplier(args.epochs, len(train_loader), recipe["warmup_epochs"])
    )
    losses, start = [], time.perf_counter()
    for _ in range(args.epochs):
        net.train()
        total, seen = 0.0, 0
        for inputs, targets in train_loader:
            optimizer.zero_grad()
            loss = criterion(net(inputs), targets)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total, seen = total + loss.item() * len(targets), seen + len(targets)
        losses.append(total / seen)
    train_s = time.perf_counter() - start
    net.eval()
    correct = 0
    with torch.no_grad():
        for inputs, targets in test_loader:
            correct += (net(inputs).argmax(1) == targets).sum().item()
    return {"test_top1": correct / len(data.test_y), "train_losses": losses, "train_s": train_s}


def cnnbench_loop(data, args, recipe: dict, seed: int, **changes) -> dict:
    cfg = TrainConfig(
        model=args.model,
        dataset="cifar10",
        variant="small",
        width=args.width,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        nesterov=False,
        decay="all",
        schedule="cosine",
        warmup_fraction=recipe["warmup_epochs"] / args.epochs,
        lr_update="epoch" if recipe["warmup_epochs"] == 0 else "step",
        label_smoothing=0.0,
        precise_bn=0,
        seed=seed,
        precision=args.precision,
        limit_train=args.limit_train,
        limit_test=args.limit_test,
    ).replace(**changes)
    with tempfile.TemporaryDirectory() as out:
        summary = fit(cfg, out, data=data)
        losses = [float(r["train_loss"]) for r in read_csv(Path(out) / METRICS_CSV)]
    return {"test_top1": summary["test_top1"], "train_losses": losses, "train_s": summary["train_time_s"]}


def cnnbench_defaults_loop(data, args, recipe: dict, seed: int) -> dict:
    """cnnbench's own choices where a recipe leaves them open: Nesterov, decay on weights only, per-step schedule."""
    return cnnbench_loop(data, args, recipe, seed, nesterov=True, decay="weights", lr_update="step")


LOOPS = {"plain": plain_loop, "cnnbench": cnnbench_loop, "cnnbench-defaults": cnnbench_defaults_loop}


def t_interval(diffs: list[float]) -> tuple[float, float, float]:
    from scipy import stats

    d = np.asarray(diffs)
    if len(d) < 2:
        return float(d.mean()), float("nan"), float("nan")
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)


def summarize(results: list[dict]) -> str:
    """Per recipe and cnnbench loop: both loops' top-1 by seed, the paired difference with its 95% t interval, and
    cnnbench's speed as a multiple of the plain loop's (training time summed over the seeds)."""
    lines = [
        "| recipe | loop | plain loop top-1 (seeds) | cnnbench top-1 (seeds) | cnnbench - plain, 95% CI | speed |",
        "|---|---|---|---|---|---|",
    ]
    for recipe in RECIPES:
        by = {(r["loop"], r["seed"]): r for r in results if r["recipe"] == recipe}
        for loop in ("cnnbench", "cnnbench-defaults"):
            seeds = sorted(s for (name, s) in by if name == "plain" and (loop, s) in by)
            if not seeds:
                continue
            plain = [by["plain", s]["test_top1"] for s in seeds]
            ours = [by[loop, s]["test_top1"] for s in seeds]
            mean, lo, hi = t_interval([100 * (o - p) for o, p in zip(ours, plain)])
            speed = sum(by["plain", s]["train_s"] for s in seeds) / sum(by[loop, s]["train_s"] for s in seeds)
            lines.append(
                f"| {recipe} | {loop} | {', '.join(f'{v:.1%}' for v in plain)} | {', '.join(f'{v:.1%}' for v in ours)} "
                f"| {mean:+.2f} points ({lo:+.2f} to {hi:+.2f}) | {speed:.2f}x |"
            )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet18")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--limit-train", type=int, default=10000)
    p.add_argument("--limit-test", type=int, default=2000)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--recipes", default="peer,warmup")
    p.add_argument("--loops", default="plain,cnnbench,cnnbench-defaults", help=f"of {', '.join(LOOPS)}")
    p.add_argument("--precision", default="auto", help="cnnbench's precision (the plain loop is fp32, as published)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default="bench-runs/peer-parity")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_file = out / "results.jsonl"
    results = [json.loads(line) for line in results_file.read_text().splitlines()] if results_file.exists() else []
    done = {(r["loop"], r["recipe"], r["seed"]) for r in results}
    data = load_dataset("cifar10", args.data_dir, DataOptions(limit_train=args.limit_train, limit_test=args.limit_test))
    print(f"{data.source}: {len(data.train_y)} training, {len(data.test_y)} test images; {platform.processor()}")
    for recipe in args.recipes.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            for loop in args.loops.split(","):
                train = LOOPS[loop]
                if (loop, recipe, seed) in done:
                    continue
                r = {"loop": loop, "recipe": recipe, "seed": seed, **train(data, args, RECIPES[recipe], seed)}
                r["settings"] = {k: v for k, v in vars(args).items() if k not in ("out", "seeds", "recipes", "loops")}
                print(
                    f"{loop:17s} {recipe:7s} seed {seed}: top-1 {r['test_top1']:.2%}, train loss per epoch "
                    f"{', '.join(f'{v:.3f}' for v in r['train_losses'])}, {r['train_s']:.0f} s",
                    flush=True,
                )
                with results_file.open("a") as f:
                    f.write(json.dumps(r) + "\n")
                results.append(r)
    print(summarize(results))


if __name__ == "__main__":
    main()

"""Training throughput of cnnbench against the common CIFAR recipe, side by side in one run.

The reference is written the way most CIFAR repositories do it: a torchvision-style Dataset returning PIL
images, transforms RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, Normalize, a DataLoader with
2 workers, fp32, NCHW. cnnbench runs its own loop (uint8 data in memory, on the device when it is a GPU;
batched augmentation; bf16 autocast + channels_last where fast). Both train the same model on the same
CIFAR-10 slice for whole epochs (data, augmentation and step included); the first epoch of each is a
warm-up and not counted.
Also measures the practical peak for bf16 and fp32 (benchmarks/peak.py: the faster of a matmul and a
convolution), to express cnnbench's arithmetic rate (3 x forward FLOPs x images/s) as a share of it.

    python benchmarks/throughput.py --models vgg16_bn,resnet18 --images 2560
    python benchmarks/throughput.py --device cuda --images 20000   # on a GPU the reference moves batches to it
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python benchmarks/throughput.py --fp32-sweep --images 1280
        # fp32 settings side by side; the two variables make an AVX-512 CPU compute as an AVX2 one would
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from peak import practical_peak  # benchmarks/ is on the path when this script runs
from PIL import Image

from cnnbench import TrainConfig, fit
from cnnbench.cli import exit_code_of
from cnnbench.data import DataOptions, load_dataset
from cnnbench.engine.runtime import device_name, resolve_device, synchronize
from cnnbench.fileio import read_csv
from cnnbench.models import create_model
from cnnbench.models.complexity import count_flops


class PILDataset(torch.utils.data.Dataset):
    """Like torchvision.datasets.CIFAR10: uint8 HWC arrays, one PIL image per __getitem__."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def reference_images_per_s(
    model_name: str, data, device: torch.device, workers: int, epochs: int = 2, batch_size: int = 128
) -> float:
    import torchvision.transforms as T

    transform = T.Compose(
        [
            T.RandomCrop(32, padding=4),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(data.mean.tolist(), data.std.tolist()),
        ]
    )
    images = data.train_x.permute(0, 2, 3, 1).numpy()
    loader = torch.utils.data.DataLoader(
        PILDataset(images, data.train_y.numpy(), transform),
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        drop_last=False,
        persistent_workers=True,
    )
    torch.manual_seed(0)
    model = create_model(model_name, num_classes=10, variant="small").to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()
    rates = []
    for _ in range(epochs):
        t0, seen = time.perf_counter(), 0
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            loss = loss_fn(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(y)
        synchronize(device)
        rates.append(seen / (time.perf_counter() - t0))
    return rates[-1]


def cnnbench_images_per_s(
    model_name: str, images: int, device: torch.device, epochs: int = 2, compile: bool = False, **settings
) -> float:
    cfg = TrainConfig(
        model=model_name,
        dataset="cifar10",
        epochs=epochs,
        limit_train=images,
        limit_test=500,
        compile=compile,
        device=device.type,
        **settings,
    )
    with tempfile.TemporaryDirectory() as tmp:
        fit(cfg, Path(tmp) / "run")
        rows = read_csv(Path(tmp) / "run" / "metrics.csv")
    return float(rows[-1]["images_per_s"])  # the last epoch: the first is a warm-up


FP32_SETTINGS = {  # label: TrainConfig settings, all in fp32
    "NCHW": dict(channels_last=False),
    "channels_last": dict(channels_last=True),
    "NCHW, compiled": dict(channels_last=False, compile=True),
    "channels_last, compiled": dict(channels_last=True, compile=True),
}


def fp32_sweep(args, data, device: torch.device, fp32_gflops: float) -> None:
    """Each fp32 setting's images/s against the reference in the same run, and its arithmetic rate as a share of
    the fp32 practical peak (benchmarks/peak.py)."""
    print("| model | setting | img/s | against the reference | GFLOP/s (3 x fwd) | share of the fp32 practical peak |")
    print("|---|---|---|---|---|---|")
    for name in args.models.split(","):
        fwd = count_flops(create_model(name, num_classes=10, variant="small"), (3, 32, 32))
        ref = reference_images_per_s(name, data, device, args.workers)
        print(
            f"| {name} (small) | reference (PIL + DataLoader, NCHW) | {ref:.0f} | 1.00x | {3 * fwd * ref / 1e9:.0f} "
            f"| {3 * fwd * ref / 1e9 / fp32_gflops:.0%} |",
            flush=True,
        )
        for label, settings in FP32_SETTINGS.items():
            rate = cnnbench_images_per_s(name, args.images, device, precision="fp32", **settings)
            gflops = 3 * fwd * rate / 1e9
            print(
                f"| {name} (small) | cnnbench, {label} | {rate:.0f} | {rate / ref:.2f}x | {gflops:.0f} "
                f"| {gflops / fp32_gflops:.0%} |",
                flush=True,
            )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", default="vgg16_bn,resnet18")
    p.add_argument("--images", type=int, default=2560, help="CIFAR-10 training images per epoch")
    p.add_argument("--json", default=None)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--workers", type=int, default=2, help="the reference DataLoader's worker processes (2 is common)")
    p.add_argument("--compile-only", action="store_true", help="measure cnnbench with and without --compile instead")
    p.add_argument(
        "--fp32-sweep",
        action="store_true",
        help="cnnbench in fp32 only: NCHW or channels_last, eager or compiled, against the reference (what pays "
        "where bf16 is not fast, e.g. AVX2 CPUs)",
    )
    args = p.parse_args()
    data = load_dataset("cifar10", options=DataOptions(limit_train=args.images, limit_test=500))
    device = resolve_device(args.device)
    fp32_rates = practical_peak(torch.float32, device)
    fp32 = max(fp32_rates.values())
    # where bf16 is emulated (an AVX2 CPU) its product takes minutes and is not what the fp32 sweep compares with
    bf16_rates = (
        {"matmul": float("nan"), "conv": float("nan")} if args.fp32_sweep else practical_peak(torch.bfloat16, device)
    )
    bf16 = max(bf16_rates.values())
    print(
        f"device: {device_name(device)}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
        f"reference DataLoader workers: {args.workers}"
    )
    print(
        f"practical peak (the faster of a 2048^2 matmul and a 256-channel 3x3 convolution): bf16 {bf16:.0f} GFLOP/s "
        f"(matmul {bf16_rates['matmul']:.0f}, conv {bf16_rates['conv']:.0f}), fp32 {fp32:.0f} GFLOP/s (matmul "
        f"{fp32_rates['matmul']:.0f}, conv {fp32_rates['conv']:.0f})"
    )
    if args.fp32_sweep:
        fp32_sweep(args, data, device, fp32)
        return
    if args.compile_only:
        print("| model | cnnbench img/s | with --compile img/s | ratio |\n|---|---|---|---|")
        for name in args.models.split(","):
            eager = cnnbench_images_per_s(name, args.images, device)
            compiled = cnnbench_images_per_s(name, args.images, device, compile=True)
            print(f"| {name} (small) | {eager:.0f} | {compiled:.0f} | {compiled / eager:.2f}x |", flush=True)
        return
    print(
        "| model | reference (PIL + DataLoader, fp32) img/s | cnnbench img/s | speed-up | cnnbench GFLOP/s (3 x "
        "fwd) | share of the bf16 practical peak |"
    )
    print("|---|---|---|---|---|---|")
    records = []
    for name in args.models.split(","):
        ref = reference_images_per_s(name, data, device, args.workers)
        ours = cnnbench_images_per_s(name, args.images, device)
        fwd = count_flops(create_model(name, num_classes=10, variant="small"), (3, 32, 32))
        achieved = 3 * fwd * ours / 1e9
        records.append(
            {
                "model": name,
                "device": device_name(device),
                "reference_images_per_s": ref,
                "cnnbench_images_per_s": ours,
                "speedup": ours / ref,
                "achieved_gflops": achieved,
                "bf16_peak_gflops": bf16,
                "fp32_peak_gflops": fp32,
                "bf16_matmul_gflops": bf16_rates["matmul"],
                "fp32_matmul_gflops": fp32_rates["matmul"],
            }
        )
        print(
            f"| {name} (small) | {ref:.0f} | {ours:.0f} | {ours / ref:.2f}x | {achieved:.0f} | {achieved / bf16:.0%} |",
            flush=True,
        )
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=2))


if __name__ == "__main__":
    sys.exit(exit_code_of(main, "throughput.py"))

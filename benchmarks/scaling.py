"""Training images/s against batch size and CPU threads (synthetic 3x32x32 input, cnnbench's step:
bf16 autocast + channels_last where fast), median of repeats after warm-up; table and plot.

    python benchmarks/scaling.py --models vgg16_bn,resnet18 --batch-sizes 32,128,512 --threads 1,2 \
        --plot docs/scaling.png
    python benchmarks/scaling.py --device cuda --batch-sizes 32,128,512,2048   # threads do not apply on a GPU
"""

from __future__ import annotations

import argparse
import sys

import torch

from cnnbench.analysis.profile import ProfileConfig, profile_model
from cnnbench.cli import exit_code_of, int_list
from cnnbench.engine.runtime import device_name, resolve_device


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", default="vgg16_bn,resnet18")
    p.add_argument("--batch-sizes", type=int_list, default=(32, 64, 128, 256, 512))
    p.add_argument("--threads", type=int_list, default=(1, 2))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--plot", default=None)
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    args = p.parse_args()
    device = resolve_device(args.device)
    models = args.models.split(",")
    batches = list(args.batch_sizes)
    threads = list(args.threads) if device.type == "cpu" else [torch.get_num_threads()]
    results = {}
    for t in threads:
        torch.set_num_threads(t)
        for m in models:
            for b in batches:
                r = profile_model(
                    m, ProfileConfig(batch_size=b, train=True, warmup=1, repeats=args.repeats, device=device.type)
                )
                results[(m, t, b)] = r["train_images_per_s"]
                print(f"{m} threads={t} batch={b}: {r['train_images_per_s']:.0f} img/s ({r['precision']})", flush=True)
    print(f"\ndevice: {device_name(device)}, torch {torch.__version__}")
    print("| model | threads | " + " | ".join(f"batch {b}" for b in batches) + " |")
    print("|---|---|" + "---|" * len(batches))
    for m in models:
        for t in threads:
            print(f"| {m} (small) | {t} | " + " | ".join(f"{results[(m, t, b)]:.0f}" for b in batches) + " |")
    if args.plot:
        from cnnbench.report.plots import _figure_module, save_figure

        plt = _figure_module()
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for m in models:
            for t in threads:
                ax.plot(batches, [results[(m, t, b)] for b in batches], "o-", label=f"{m}, {t} thread{'s' * (t > 1)}")
        ax.set_xscale("log", base=2), ax.set_xlabel("batch size"), ax.set_ylabel("training images/s")
        ax.grid(alpha=0.3), ax.legend(fontsize=8)
        save_figure(fig, args.plot)


if __name__ == "__main__":
    sys.exit(exit_code_of(main, "scaling.py"))

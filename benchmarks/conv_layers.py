"""Each convolution of a model on its own: the achieved GFLOP/s of its forward pass and of its backward pass
(input and weight gradients), at the shapes a training step gives it, against the practical peak measured in the
same run. Where a step's profile says the convolutions take most of the time, this says which ones, and whether
forward or backward falls short.

    python benchmarks/conv_layers.py --models vgg16_bn,resnet18 --precisions bf16,fp32 --batch-size 128
    python benchmarks/conv_layers.py --grid --precisions bf16,fp32   # where the matmul route wins, by size
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn as nn
from peak import cifar_model, machine_line, practical_peak, step_benchmark_parser  # benchmarks/ is on the path when run

from cnnbench.engine.runtime import autocast
from cnnbench.models.small_maps import im2col_conv3x3, routable


def conv_inputs(model: nn.Module, batch_size: int) -> list[tuple[str, nn.Conv2d, torch.Size]]:
    """Every Conv2d with the input shape it sees in a forward pass of a CIFAR-sized batch."""
    seen, hooks = [], []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(
                m.register_forward_hook(lambda mod, inp, out, name=name: seen.append((name, mod, inp[0].shape)))
            )
    with torch.no_grad():
        model(torch.randn(batch_size, 3, 32, 32).to(memory_format=torch.channels_last))
    for h in hooks:
        h.remove()
    return seen


def timed(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def layer_rates(
    conv: nn.Conv2d, shape: torch.Size, precision: str, first: bool, repeats: int, im2col: bool = False
) -> dict:
    """GFLOP/s of the convolution's forward and backward through PyTorch's own kernels (oneDNN on a CPU), and,
    with ``im2col`` and a 3x3 stride-1 convolution, how much faster its forward and backward run as one matmul
    (models/small_maps.py)."""
    device = torch.device("cpu")
    x = torch.randn(shape).to(memory_format=torch.channels_last).requires_grad_(not first)
    with autocast(device, precision):
        out = conv(x)
    macs = out.numel() // out.shape[0] * shape[0] * conv.in_channels // conv.groups * conv.kernel_size[0] ** 2
    grad = torch.randn_like(out)

    def forward():
        with torch.no_grad(), autocast(device, precision):
            conv(x)

    def backward():
        with autocast(device, precision):
            y = conv(x)
        y.backward(grad)

    t_forward = timed(forward, repeats)
    t_both = timed(backward, repeats)
    t_backward = max(t_both - t_forward, 1e-9)
    speedup = None
    if im2col and routable(conv):

        def as_matmul():
            with autocast(device, precision):
                y = im2col_conv3x3(x, conv.weight, conv.bias)
            y.backward(grad)

        speedup = t_both / timed(as_matmul, repeats)
    return {
        "im2col_speedup": speedup,
        "macs": macs,
        "forward": 2 * macs / t_forward / 1e9,
        "backward": 2 * macs * (1 if first else 2) / t_backward / 1e9,  # weight gradient, plus the input's
        "time": t_both,
    }


def onednn_over_matmul(precision: str, channels: int, size: int, batch: int, repeats: int) -> float:
    """oneDNN's time over the matmul route's, forward and backward, for one C -> C 3x3 convolution."""
    conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False).to(memory_format=torch.channels_last)
    x = torch.randn(batch, channels, size, size).to(memory_format=torch.channels_last)
    x = (x.bfloat16() if precision == "bf16" else x).requires_grad_()
    grad = torch.randn(batch, channels, size, size).to(memory_format=torch.channels_last)

    def step(fn):
        def run():
            with autocast(torch.device("cpu"), precision):
                y = fn()
            y.backward(grad.to(y.dtype))

        return run

    onednn = timed(step(lambda: conv(x)), repeats)
    return onednn / timed(step(lambda: im2col_conv3x3(x, conv.weight, None)), repeats)


def grid(precisions: list[str], repeats: int) -> None:
    """oneDNN's time over the matmul route's on 2x2 and 4x4 maps, by channels and batch: where
    models/small_maps.MATMUL_MAPS draws its lines."""
    batches = (32, 64, 128, 256)
    for precision in precisions:
        print(f"\n{precision}: oneDNN time / matmul time, forward and backward")
        print("| map | channels | " + " | ".join(f"batch {n}" for n in batches) + " |")
        print("|---|---|" + "---|" * len(batches))
        for size in (2, 4):
            for channels in (64, 128, 256, 512):
                ratios = [onednn_over_matmul(precision, channels, size, n, repeats) for n in batches]
                print(f"| {size}x{size} | {channels} | " + " | ".join(f"{r:.2f}x" for r in ratios) + " |", flush=True)


def main() -> None:
    p = step_benchmark_parser()
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--compare-im2col", action="store_true", help="also time each 3x3 stride-1 convolution as one matmul"
    )
    p.add_argument("--grid", action="store_true", help="time oneDNN against the matmul route over a size grid")
    args = p.parse_args()
    print(machine_line())
    if args.grid:
        grid(args.precisions.split(","), max(args.repeats, 5))
        return
    for precision in args.precisions.split(","):
        peak = max(practical_peak(torch.bfloat16 if precision == "bf16" else torch.float32).values())
        print(f"\n{precision}: practical peak {peak:,.0f} GFLOP/s")
        for model_name in args.models.split(","):
            model = cifar_model(model_name)
            rows = []
            for i, (name, conv, shape) in enumerate(conv_inputs(model, args.batch_size)):
                r = layer_rates(conv, shape, precision, i == 0, args.repeats, args.compare_im2col)
                rows.append((name, conv, shape, r))
            total = sum(r["time"] for *_, r in rows)
            print(f"\n{model_name} ({precision}): {total * 1e3:.0f} ms of convolution per step, forward and backward")
            print(
                "| layer | in -> out, kernel, stride | map | forward GFLOP/s | backward GFLOP/s | share of conv time |"
            )
            print("|---|---|---|---|---|---|")
            for name, conv, shape, r in rows:
                print(
                    f"| {name} | {conv.in_channels} -> {conv.out_channels}, {conv.kernel_size[0]}x{conv.kernel_size[1]}"
                    f", {conv.stride[0]} | {shape[2]}x{shape[3]} | {r['forward']:.0f} ({r['forward'] / peak:.0%}) | "
                    f"{r['backward']:.0f} ({r['backward'] / peak:.0%}) | {r['time'] / total:.0%} | "
                    + (f"{r['im2col_speedup']:.2f}x |" if r["im2col_speedup"] else "- |"),
                    flush=True,
                )


if __name__ == "__main__":
    main()

"""3x3 convolutions on small feature maps as one matrix multiplication (im2col), for CPU training.

On the CPU, oneDNN's convolutions reach a small share of the cores' rate on the last stages of a CIFAR-sized
network: a 512-channel 3x3 convolution on 2x2 maps runs its forward at 5-7% and its backward at 3% of the bf16
peak (AMX), where the same work as a (pixels x 9*channels) @ (9*channels x out) matmul runs at about 60%
(docs/BENCHMARKS.md, "Every core busy"). Those layers hold half of vgg16_bn's convolution time; with few
channels the matmul loses (MATMUL_MAPS says where it wins). ``use_small_map_convolutions`` routes such
convolutions through the matmul; everything else, and every convolution off the CPU, stays with PyTorch's own
kernels. The arithmetic is the same (the padding's zeros included), summed in another order: results agree within
the precision's rounding.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.profiler import record_function

# Where the matmul was faster than oneDNN (fwd+bwd, benchmarks/conv_layers.py --compare-im2col and a grid of
# channels x batch 32-256, CPU-3 with AMX, docs/BENCHMARKS.md): on 2x2 maps from 256 input channels (bf16 1.0-3.8x,
# fp32 1.15-2.4x; with 64-128 channels 0.4-1.4x), and in bf16 on 4x4 maps from 256 x 512 channels (1.3-1.9x;
# 256 x 256 mixed, 0.7-1.2x). Everything else stays with oneDNN. Other CPUs may draw the lines elsewhere.
MATMUL_MAPS = {  # compute dtype -> rules: (largest map in pixels, fewest input channels, fewest input x output)
    torch.bfloat16: ((4, 256, 0), (16, 256, 256 * 512)),
    torch.float32: ((4, 256, 0),),
}
PROFILER_LABEL = "cnnbench::small_map_conv"


def _columns(x: torch.Tensor) -> torch.Tensor:
    """[N, H, W, C] -> [N*H*W, 9*C]: each pixel's 3x3 neighbourhood, zeros outside the map (the padding)."""
    n, h, w, c = x.shape
    padded = F.pad(x, (0, 0, 1, 1, 1, 1))
    cols = x.new_empty(n, h, w, 9, c)
    for tap in range(9):
        i, j = divmod(tap, 3)
        cols[:, :, :, tap] = padded[:, i : i + h, j : j + w]
    return cols.view(n * h * w, 9 * c)


class _Im2Col3x3(torch.autograd.Function):
    """out = columns(x) @ weights, with the backward written out: the input's gradient is folded back into the
    padded map tap by tap (autograd's own backward of the nine slices would allocate nine padded maps)."""

    @staticmethod
    def forward(ctx, x_nhwc: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        with record_function(PROFILER_LABEL + " forward"):  # benchmarks/step_profile.py counts it apart
            cols = _columns(x_nhwc)
            ctx.save_for_backward(cols, weights)
            ctx.map_shape = x_nhwc.shape
            return cols @ weights

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        cols, weights = ctx.saved_tensors
        n, h, w, c = ctx.map_shape
        grad_x = grad_weights = None
        with record_function(PROFILER_LABEL + " backward"):
            if ctx.needs_input_grad[1]:
                grad_weights = cols.t() @ grad
            if ctx.needs_input_grad[0]:
                grad_cols = (grad @ weights.t()).view(n, h, w, 9, c)
                padded = grad.new_zeros(n, h + 2, w + 2, c)
                for tap in range(9):
                    i, j = divmod(tap, 3)
                    padded[:, i : i + h, j : j + w] += grad_cols[:, :, :, tap]
                grad_x = padded[:, 1 : h + 1, 1 : w + 1]
        return grad_x, grad_weights


def im2col_conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """F.conv2d(x, weight, bias, stride=1, padding=1) as one matmul; the result is channels_last."""
    n, c, h, w = x.shape
    out_channels = weight.shape[0]
    if torch.is_autocast_enabled("cpu"):  # cast as autocast would for a convolution, then compute outside it
        dtype = torch.get_autocast_dtype("cpu")
        x, weight = x.to(dtype), weight.to(dtype)
    with torch.autocast("cpu", enabled=False):
        flat = _Im2Col3x3.apply(x.permute(0, 2, 3, 1), weight.permute(2, 3, 1, 0).reshape(9 * c, out_channels))
    out = flat.view(n, h, w, out_channels).permute(0, 3, 1, 2)
    return out if bias is None else out + bias.to(out.dtype).view(1, out_channels, 1, 1)


def takes_matmul(pixels: int, in_channels: int, out_channels: int, dtype: torch.dtype) -> bool:
    """Whether a 3x3 stride-1 convolution of this size runs as one matmul: some rule of MATMUL_MAPS holds."""
    return any(
        pixels <= largest and in_channels >= fewest_in and in_channels * out_channels >= fewest_product
        for largest, fewest_in, fewest_product in MATMUL_MAPS.get(dtype, ())
    )


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype


class SmallMapConv2d(nn.Conv2d):
    """An nn.Conv2d (same parameters, state_dict and hooks) that computes a 3x3, stride-1, padding-1 convolution
    on a small CPU map with many channels (MATMUL_MAPS) through ``im2col_conv3x3``, and anything else as nn.Conv2d
    does."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if (
            input.device.type == "cpu"
            and input.dim() == 4
            and takes_matmul(
                input.shape[2] * input.shape[3], self.in_channels, self.out_channels, _compute_dtype(input)
            )
            and not torch.jit.is_scripting()
            and not torch.compiler.is_compiling()
        ):
            return im2col_conv3x3(input, weight, bias)
        return super()._conv_forward(input, weight, bias)


def routable(module: nn.Module) -> bool:
    """A plain nn.Conv2d whose settings im2col_conv3x3 computes exactly."""
    return (
        type(module) is nn.Conv2d
        and module.kernel_size == (3, 3)
        and module.stride == (1, 1)
        and module.padding == (1, 1)
        and module.dilation == (1, 1)
        and module.groups == 1
        and module.padding_mode == "zeros"
    )


def use_small_map_convolutions(model: nn.Module) -> int:
    """Route the model's 3x3 convolutions through SmallMapConv2d where their map is small (decided at each call,
    by the input's size); return how many convolutions may take that route. The modules keep their parameters,
    names and hooks (only their class changes), so checkpoints and optimizers are untouched."""
    routed = 0
    for module in model.modules():
        if routable(module):
            module.__class__ = SmallMapConv2d
            routed += 1
    return routed

"""Small-map 3x3 convolutions as matmuls (models/small_maps.py): the same numbers as nn.Conv2d, forward and
backward, in fp32 and under bf16 autocast, and nn.Conv2d's own path wherever the shortcut does not apply."""

import copy
import math

import pytest
import torch
import torch.nn as nn

from cnnbench.models import create_model
from cnnbench.models.small_maps import (
    im2col_conv3x3,
    takes_matmul,
    use_small_map_convolutions,
)


class MatmulConv(nn.Module):
    """A convolution's parameters computed through im2col_conv3x3 always, whatever its size."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.weight, self.bias = conv.weight, conv.bias

    def forward(self, x):
        return im2col_conv3x3(x, self.weight, self.bias)


def _outputs_and_grads(conv: nn.Module, x: torch.Tensor, bf16: bool):
    x = x.clone().requires_grad_()
    with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        y = conv(x)
    y.float().square().sum().backward()
    return y.float(), x.grad, conv.weight.grad, conv.bias.grad if conv.bias is not None else None


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
@pytest.mark.parametrize("size,bias", [(1, True), (2, False), (3, True), (4, False)])
def test_the_matmul_route_gives_nn_conv2ds_outputs_and_gradients(size, bias, bf16):
    torch.manual_seed(0)
    plain = nn.Conv2d(24, 40, 3, padding=1, bias=bias)
    routed = MatmulConv(copy.deepcopy(plain))
    x = torch.randn(6, 24, size, size).to(memory_format=torch.channels_last)
    expected, got = _outputs_and_grads(plain, x, bf16), _outputs_and_grads(routed, x, bf16)
    tolerance = 2e-2 if bf16 else 1e-5  # bf16 keeps 8 bits of mantissa: sums in another order differ in the last
    for e, g in zip(expected, got):
        if e is not None:
            assert g.shape == e.shape and g.dtype == e.dtype
            assert (g.float() - e.float()).abs().max() <= tolerance * e.float().abs().max()


def test_the_route_is_taken_only_on_small_maps_of_3x3_stride_1_convolutions(monkeypatch):
    calls = []
    import cnnbench.models.small_maps as small_maps

    real = small_maps.im2col_conv3x3
    monkeypatch.setattr(small_maps, "im2col_conv3x3", lambda *a: calls.append(a[0].shape) or real(*a))
    many, few = nn.Conv2d(256, 8, 3, padding=1), nn.Conv2d(128, 8, 3, padding=1)
    use_small_map_convolutions(nn.Sequential(many, few))
    many(torch.randn(2, 256, 2, 2))
    many(torch.randn(2, 256, 3, 3))  # larger than 2x2 in fp32: oneDNN's own convolution
    few(torch.randn(2, 128, 2, 2))  # too few channels for the matmul to win
    assert calls == [torch.Size([2, 256, 2, 2])]
    assert takes_matmul(16, 512, 512, torch.bfloat16) and not takes_matmul(16, 512, 512, torch.float32)
    assert not takes_matmul(16, 256, 256, torch.bfloat16) and takes_matmul(16, 256, 512, torch.bfloat16)
    assert not takes_matmul(4, 512, 512, torch.float16)
    strided, wide = nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.Conv2d(8, 8, 5, padding=2)
    pointwise, grouped = nn.Conv2d(8, 8, 1), nn.Conv2d(8, 8, 3, padding=1, groups=2)
    assert use_small_map_convolutions(nn.Sequential(strided, wide, pointwise, grouped)) == 0
    assert all(type(m) is nn.Conv2d for m in (strided, wide, pointwise, grouped))


def test_a_routed_model_keeps_its_state_dict_and_loads_into_a_plain_one():
    torch.manual_seed(0)
    model = create_model("vgg11", num_classes=10, in_chans=3, variant="small", width=0.125)
    plain = copy.deepcopy(model)
    routed = use_small_map_convolutions(model)
    assert routed == sum(isinstance(m, nn.Conv2d) for m in plain.modules())  # every vgg conv is 3x3, stride 1
    assert model.state_dict().keys() == plain.state_dict().keys()
    x = torch.randn(4, 3, 32, 32)
    model.eval(), plain.eval()
    with torch.no_grad():
        assert torch.allclose(model(x), plain(x), atol=1e-5)
    plain.load_state_dict(model.state_dict())  # a checkpoint of a routed model is a plain model's checkpoint


def test_im2col_output_is_channels_last_as_onednns_is():
    x = torch.randn(2, 4, 2, 2).to(memory_format=torch.channels_last)
    out = im2col_conv3x3(x, torch.randn(6, 4, 3, 3), None)
    assert out.shape == (2, 6, 2, 2) and out.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("on", [True, False])
def test_cpu_training_routes_small_maps_unless_told_not_to(tmp_path, monkeypatch, on):
    """The default CPU run trains through the matmul route (a real vgg11 at half width on the bundled digits, whose
    last stage has 256 channels on 1x1 maps); --no-small-map-matmul keeps PyTorch's convolutions."""
    import cnnbench.models.small_maps as small_maps
    from cnnbench import TrainConfig, fit

    routed_calls = []
    real = small_maps.im2col_conv3x3
    monkeypatch.setattr(small_maps, "im2col_conv3x3", lambda *a: routed_calls.append(a[0].shape) or real(*a))
    cfg = TrainConfig(
        model="vgg11", width=0.5, dataset="mnist_demo", epochs=1, limit_train=256, limit_test=64,
        batch_size=32, precise_bn=0, small_map_matmul=on, device="cpu",
    )  # fmt: skip
    summary = fit(cfg, tmp_path / "run")
    assert bool(routed_calls) is on
    assert all(shape[1] >= 256 and shape[2] * shape[3] <= 16 for shape in routed_calls)
    assert math.isfinite(summary["train_loss"]) and math.isfinite(summary["test_loss"])

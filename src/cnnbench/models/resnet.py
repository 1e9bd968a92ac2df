"""ResNet v1.5 (stride 2 in the 3x3 conv) on torchvision's ``BasicBlock``/``Bottleneck``/``ResNet``."""

from __future__ import annotations

import torch.nn as nn
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.models.resnet import ResNet as _TorchvisionResNet

from .registry import register_model, scaled_channels

ARCHS = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
    "resnet101": (Bottleneck, [3, 4, 23, 3]),
    "resnet152": (Bottleneck, [3, 8, 36, 3]),
}


class ResNet(_TorchvisionResNet):
    """torchvision's ResNet with a choice of stem.

    "paper": 7x7/2 conv + 3x3/2 max-pool (He et al., Table 2), so a 32 px image is 1x1 by conv5_x.
    "small": 3x3/1 conv and no max-pool, the usual CIFAR adaptation that keeps 4x4 maps at conv5_x.
    """

    def __init__(
        self,
        block,
        layers,
        num_classes: int,
        in_chans: int,
        variant: str,
        zero_init_residual: bool = False,
        width: float = 1.0,
    ):
        self.width = width  # read by _make_layer while torchvision's __init__ builds the stages
        super().__init__(block, layers, num_classes=num_classes, zero_init_residual=zero_init_residual)
        stem = scaled_channels(64, width)
        if variant == "small":
            self.conv1 = nn.Conv2d(in_chans, stem, kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        elif in_chans != 3 or width != 1:
            self.conv1 = nn.Conv2d(in_chans, stem, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        if width != 1:  # torchvision builds the stem's norm and the classifier at full width
            self.bn1 = nn.BatchNorm2d(stem)
            self.fc = nn.Linear(scaled_channels(512, width) * block.expansion, num_classes)

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1, dilate: bool = False) -> nn.Sequential:
        """torchvision's stage builder at ``width`` times the channels (the first stage starts from the scaled
        stem)."""
        if planes == 64:
            self.inplanes = scaled_channels(64, self.width)
        return super()._make_layer(block, scaled_channels(planes, self.width), blocks, stride, dilate)


def _register(name: str) -> None:
    block, layers = ARCHS[name]
    register_model(name)(
        lambda num_classes, in_chans, variant, _b=block, _l=layers, **kw: ResNet(
            _b, _l, num_classes, in_chans, variant, **kw
        )
    )


for _name in ARCHS:
    _register(_name)

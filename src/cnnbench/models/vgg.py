"""VGG, all six columns of Simonyan & Zisserman's Table 1, declared as data (torchvision's ``vgg.py`` style).

Tokens: an int is a 3x3 conv with that many channels, ``(c, 1)`` a 1x1 conv (column C),
"M" a 2x2 max-pool, "LRN" local response normalisation (column A-LRN).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .registry import register_model, scaled_channels

M, LRN = "M", "LRN"
CFGS: dict[str, list] = {
    "A": [64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M],
    "A-LRN": [64, LRN, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M],
    "B": [64, 64, M, 128, 128, M, 256, 256, M, 512, 512, M, 512, 512, M],
    "C": [64, 64, M, 128, 128, M, 256, 256, (256, 1), M, 512, 512, (512, 1), M, 512, 512, (512, 1), M],
    "D": [64, 64, M, 128, 128, M, 256, 256, 256, M, 512, 512, 512, M, 512, 512, 512, M],
    "E": [64, 64, M, 128, 128, M, 256, 256, 256, 256, M, 512, 512, 512, 512, M, 512, 512, 512, 512, M],
}


def make_layers(cfg: list, in_chans: int = 3, batch_norm: bool = False, width: float = 1.0) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = in_chans
    for token in cfg:
        if token == M:
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        elif token == LRN:
            # AlexNet's parameters, which the VGG paper says it reuses (Sec. 2.1).
            layers.append(nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0))
        else:
            out, kernel = token if isinstance(token, tuple) else (token, 3)
            out = scaled_channels(out, width)
            layers.append(nn.Conv2d(channels, out, kernel_size=kernel, padding=kernel // 2))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.ReLU(inplace=True))
            channels = out
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """Module names (features/avgpool/classifier) match torchvision's, so its state_dicts load."""

    def __init__(self, features: nn.Module, num_classes: int, variant: str, dropout: float = 0.5, width: float = 1.0):
        super().__init__()
        last, hidden = scaled_channels(512, width), scaled_channels(4096, width)
        self.features = features
        if variant == "paper":
            # FC-4096, FC-4096, FC-classes with dropout, after pooling to 7x7 (torchvision's head):
            # a 32 px input reaches 1x1 here and is replicated to 7x7, feeding a 25,088-wide layer.
            self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
            self.classifier = nn.Sequential(
                nn.Linear(last * 7 * 7, hidden),
                nn.ReLU(True),
                nn.Dropout(p=dropout),
                nn.Linear(hidden, hidden),
                nn.ReLU(True),
                nn.Dropout(p=dropout),
                nn.Linear(hidden, num_classes),
            )
        else:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Linear(last, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        return self.classifier(torch.flatten(x, 1))


def _vgg(
    cfg: str, batch_norm: bool, num_classes: int, in_chans: int, variant: str, dropout: float = 0.5, width: float = 1.0
):
    return VGG(make_layers(CFGS[cfg], in_chans, batch_norm, width), num_classes, variant, dropout, width)


def _register(name: str, cfg: str) -> None:
    for suffix, bn in (("", False), ("_bn", True)):
        register_model(name + suffix)(
            lambda num_classes, in_chans, variant, _cfg=cfg, _bn=bn, **kw: _vgg(
                _cfg, _bn, num_classes, in_chans, variant, **kw
            )
        )


# Registered name -> column of the paper's Table 1 (each also registered with "_bn": batch norm after every conv).
COLUMNS = {"vgg11": "A", "vgg11_lrn": "A-LRN", "vgg13": "B", "vgg16_c": "C", "vgg16": "D", "vgg19": "E"}

for _name, _cfg in COLUMNS.items():
    _register(_name, _cfg)

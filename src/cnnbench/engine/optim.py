"""The optimizer a run trains with: its parameter groups (which parameters decay, which learn at a fine-tuning
body's lower rate) and the steps an epoch takes."""

from __future__ import annotations

import torch
import torch.nn as nn

from ..config import TrainConfig
from .pretrained import classifier_name, is_head_parameter


def param_groups(
    model: nn.Module, weight_decay: float, lr: float, backbone_lr_scale: float | None = None, decay: str = "weights"
) -> list[dict]:
    """Weight decay on conv/linear weights only by default: decaying biases and norm scales hurts (Goyal et al.
    2017); ``decay="all"`` decays every parameter, as ``torch.optim.SGD(model.parameters(), ...)`` does.
    With ``backbone_lr_scale`` (fine-tuning), everything but the classifier learns at ``lr`` times it."""
    head = classifier_name(model) if backbone_lr_scale is not None else None
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            in_body = head is not None and not is_head_parameter(name, head)
            groups.setdefault((in_body, p.ndim > 1 or decay == "all"), []).append(p)
    return [
        {
            "params": params,
            "weight_decay": weight_decay if decayed else 0.0,
            "lr": lr * backbone_lr_scale if in_body else lr,
        }
        for (in_body, decayed), params in sorted(groups.items(), key=lambda kv: (kv[0][0], not kv[0][1]))
    ]


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay, cfg.lr, cfg.backbone_lr_scale if cfg.pretrained else None, cfg.decay)
    # PyTorch's default step (for-loop on a CPU), not fused=True: the fused step was 2-5% faster on a CPU but sums
    # in another order, and the engine keeps training bit for bit as the plain loop does (tests/test_peer_parity.py).
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def steps_per_epoch(n_train: int, batch_size: int, world_size: int = 1) -> int:
    share = n_train // world_size
    full, rest = divmod(share, batch_size)
    return full + (rest >= 2)

"""The bisection behind peer parity: a plain loop on cnnbench's own data tensors, one difference from the engine at a
time (data pipeline, normalisation constants, precision, memory format), at the recipe where the gap was reported
(ResNet18 small, full width, 3 epochs, batch 128, SGD lr 0.1 with plain momentum and decay on every parameter,
cosine per epoch, no warm-up, no label smoothing, a class-balanced 10,000 / 2,000 CIFAR-10 slice).

    python benchmarks/peer_parity_bisect.py SEED '{"pipeline": "peer", "norm": "kuangliu", "precision": "bf16"}'

Options: ``pipeline`` engine (cnnbench's batched crops and flips on tensors) or peer (torchvision transforms per
image through a DataLoader, as the published script); ``norm`` data (the slice's own statistics) or kuangliu (the
script's constants); ``precision`` fp32 or bf16 (autocast); ``channels_last``; ``epochs``. Prints the training loss
per epoch and the test top-1. docs/BENCHMARKS.md ("Peer parity") gives what it found.
"""

from __future__ import annotations

import json
import sys
import time

import torch
import torch.nn as nn
import torchvision.transforms.v2 as T
from peer_parity import PEER_MEAN, PEER_STD  # benchmarks/ is on the path when this script runs

from cnnbench.data.loader import Augment, eval_batches, load_dataset, train_batches
from cnnbench.data.options import DataOptions
from cnnbench.models import create_model

EPOCHS, LR, BATCH = 3, 0.1, 128


def peer_batches(data, generator, norm: str):
    mean, std = (PEER_MEAN, PEER_STD) if norm == "kuangliu" else (data.mean.tolist(), data.std.tolist())
    tf = T.Compose(
        [
            T.RandomCrop(32, padding=4),
            T.RandomHorizontalFlip(),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(mean, std),
        ]
    )

    class Images(torch.utils.data.Dataset):
        def __len__(self):
            return len(data.train_y)

        def __getitem__(self, i):
            return tf(data.train_x[i]), data.train_y[i]

    return torch.utils.data.DataLoader(Images(), batch_size=BATCH, shuffle=True, generator=generator)


def plain(data, seed, channels_last=False, precision="fp32", pipeline="engine", norm="data", epochs=EPOCHS) -> float:
    torch.manual_seed(seed)
    model = create_model("resnet18", num_classes=10, in_chans=3, variant="small")
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=EPOCHS)
    criterion = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed + 1)
    bf16 = precision == "bf16"
    for epoch in range(epochs):
        model.train()
        total, seen = 0.0, 0
        if pipeline == "engine":
            batches = train_batches(data, BATCH, generator, Augment(4, True, 0), channels_last)
        else:
            batches = peer_batches(data, generator, norm)
        for x, y in batches:
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            optimizer.zero_grad()
            with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            total, seen = total + loss.item() * len(y), seen + len(y)
        scheduler.step()
        print(f"  epoch {epoch + 1}: training loss {total / seen:.3f}", flush=True)
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in eval_batches(data.test_x, data.test_y, data, 500, channels_last):
            with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                correct += (model(x).argmax(1) == y).sum().item()
    return correct / len(data.test_y)


def main() -> None:
    seed = int(sys.argv[1])
    options = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    data = load_dataset("cifar10", options=DataOptions(limit_train=10000, limit_test=2000))
    start = time.time()
    top1 = plain(data, seed, **options)
    print(f"plain loop, seed {seed}, {options}: test top-1 {top1:.2%} ({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()

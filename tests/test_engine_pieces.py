"""The engine's small pieces against independent references: schedules, weight-decay groups, metrics, validation."""

import math

import numpy as np
import pytest
import torch

from cnnbench import TrainConfig, fit
from cnnbench.engine.evaluate import confusion_matrix, loss_and_accuracy_from_logits, per_class_metrics
from cnnbench.engine.optim import make_optimizer
from cnnbench.engine.schedules import lr_multiplier
from cnnbench.models import create_model


@pytest.mark.parametrize("schedule", ["onecycle", "cosine"])
def test_warm_up_reaches_the_peak_then_decays_to_zero(schedule):
    total, warmup = 100, 25
    f = lr_multiplier(schedule, total, 0.25)
    warm = [f(s) for s in range(warmup)]
    assert warm == pytest.approx([(s + 1) / warmup for s in range(warmup)])  # linear, peak 1.0 at its last step
    after = [f(s) for s in range(warmup, total + 1)]
    assert all(a >= b for a, b in zip(after, after[1:]))  # never rises again
    assert f(total) == pytest.approx(0.0, abs=1e-12)  # the rate after the last step
    midpoint = warmup + (total - warmup) // 2
    expected = 0.5 if schedule == "cosine" else (total - midpoint) / (total - warmup)
    assert f(midpoint) == pytest.approx(expected, abs=0.02)


def test_cosine_follows_the_cosine():
    f = lr_multiplier("cosine", 200, 0.0)
    for s in (0, 50, 100, 150, 200):
        assert f(s) == pytest.approx(0.5 * (1 + math.cos(math.pi * s / 200)))


def test_step_schedule_divides_by_ten_at_half_and_three_quarters():
    f = lr_multiplier("step", 100, 0.25)
    assert [f(s) for s in (0, 49, 50, 74, 75, 99)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    assert lr_multiplier("constant", 100, 0.25)(73) == 1.0


def test_no_weight_decay_on_biases_and_batch_norm():
    model = create_model("resnet18", num_classes=10, in_chans=3, variant="small")
    optimizer = make_optimizer(TrainConfig(weight_decay=5e-4), model)
    decay = {id(p) for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    for name, p in model.named_parameters():
        is_weight = (
            name.endswith("weight") and not name.startswith("bn") and ".bn" not in name and "downsample.1" not in name
        )
        assert (id(p) in decay) == is_weight, name
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))


def test_metrics_match_a_reference_computed_by_hand():
    g = torch.Generator().manual_seed(0)
    n, k = 300, 7
    logits = torch.randn(n, k, generator=g)
    targets = torch.randint(0, k, (n,), generator=g)
    result = loss_and_accuracy_from_logits(logits, targets)
    order = np.argsort(-logits.numpy(), axis=1)
    t = targets.numpy()
    assert result["top1"] == pytest.approx(np.mean(order[:, 0] == t))
    assert result["top5"] == pytest.approx(np.mean([t[i] in order[i, :5] for i in range(n)]))
    probs = np.exp(logits.numpy()) / np.exp(logits.numpy()).sum(1, keepdims=True)
    assert result["loss"] == pytest.approx(-np.mean(np.log(probs[np.arange(n), t])), rel=1e-5)
    preds = order[:, 0]
    cm = confusion_matrix(t, preds, k)
    for true in range(k):
        for pred in range(k):
            assert cm[true, pred] == sum(1 for a, b in zip(t, preds) if a == true and b == pred)
    for c, row in enumerate(per_class_metrics(cm, [str(i) for i in range(k)])):
        tp = sum(1 for a, b in zip(t, preds) if a == c and b == c)
        fp = sum(1 for a, b in zip(t, preds) if a != c and b == c)
        fn = sum(1 for a, b in zip(t, preds) if a == c and b != c)
        precision, recall = tp / (tp + fp) if tp + fp else 0.0, tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        assert (row["precision"], row["recall"], row["f1"], row["support"]) == pytest.approx(
            (precision, recall, f1, tp + fn)
        )


@pytest.mark.data
def test_validation_split_is_held_out_and_reported_by_fit(tmp_path):
    cfg = TrainConfig(
        model="vgg11_bn",
        dataset="mnist",
        limit_train=200,
        limit_test=64,
        val_split=40,
        batch_size=32,
        lr=0.02,
        epochs=1,
        threads=1,
    )
    summary = fit(cfg, tmp_path / "run")
    assert summary["train_images"] == 160  # the 40 validation images are not trained on
    assert summary["val_top1"] * 40 == pytest.approx(round(summary["val_top1"] * 40))  # a share of 40 images
    assert summary["val_loss"] > 0 and summary["val_loss"] != summary["test_loss"]  # its own split, not the test
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]
    assert header.endswith("val_loss,val_top1,val_top5")

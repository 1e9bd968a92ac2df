import json

import pytest
import torch
import torch.nn as nn

from cnnbench import TrainConfig, fit
from cnnbench.cli import build_parser, train_config_from_args
from cnnbench.engine.checkpoint import load_file
from cnnbench.engine.precise_bn import precise_bn_images, recompute_bn_statistics
from cnnbench.errors import ConfigError

CPU = torch.device("cpu")


def _batches(n_batches=5, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    # shifted, scaled data: the true statistics are far from BN's initial mean 0, variance 1
    return [(3 + 2 * torch.randn(size, 4, 5, 5, generator=g), torch.zeros(size)) for _ in range(n_batches)]


def test_statistics_are_the_average_over_batches_of_each_batch():
    bn = nn.BatchNorm2d(4)
    bn.running_mean.fill_(-7.0)  # stale values that must be replaced, not blended in
    bn.eval()
    batches = _batches()
    used = recompute_bn_statistics(bn, batches, images=40, device=CPU, precision="fp32")
    xs = [x for x, _ in batches]
    mean = torch.stack([x.mean((0, 2, 3)) for x in xs]).mean(0)
    var = torch.stack([x.transpose(0, 1).reshape(4, -1).var(1, unbiased=True) for x in xs]).mean(0)
    assert used == 40
    torch.testing.assert_close(bn.running_mean, mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(bn.running_var, var, rtol=1e-5, atol=1e-5)
    assert not bn.training and bn.momentum == 0.1  # mode and momentum as they were


def test_stops_after_the_requested_images_and_leaves_weights_alone():
    model = nn.Sequential(nn.Conv2d(4, 3, 1), nn.BatchNorm2d(3))
    weights = [p.detach().clone() for p in model.parameters()]
    partial = recompute_bn_statistics(model, _batches(), images=12, device=CPU, precision="fp32")
    first_12 = torch.cat([x for x, _ in _batches()])[:12]
    with torch.no_grad():
        h = model[0](first_12)
    # batches of 8 and 4 images, weighted equally
    expected = (h[:8].mean((0, 2, 3)) + h[8:12].mean((0, 2, 3))) / 2
    assert partial == 12
    torch.testing.assert_close(model[1].running_mean, expected, rtol=1e-5, atol=1e-5)
    for before, after in zip(weights, model.parameters()):
        assert torch.equal(before, after)


def test_a_single_image_changes_nothing():
    bn = nn.BatchNorm2d(4)
    bn.running_mean.fill_(5.0)
    assert recompute_bn_statistics(bn, _batches(size=1), images=10, device=CPU, precision="fp32") == 0
    assert torch.all(bn.running_mean == 5.0)


def test_budget_is_capped_at_a_tenth_of_the_training_split():
    assert precise_bn_images(4096, 50_000) == 4096
    assert precise_bn_images(4096, 2000) == 200
    assert precise_bn_images(0, 50_000) == 0


@pytest.mark.data
@pytest.mark.slow
def test_training_is_the_same_with_or_without_it_and_the_saved_statistics_are_recomputed(tmp_path):
    base = TrainConfig(
        model="resnet18",
        dataset="mnist",
        epochs=1,
        limit_train=320,
        limit_test=64,
        batch_size=32,
        lr=0.05,
        deterministic=True,
        precision="fp32",
    )
    fit(base.replace(precise_bn=0), tmp_path / "off")
    fit(base.replace(precise_bn=64), tmp_path / "on")
    off = load_file(tmp_path / "off" / "checkpoints" / "last.pt")["model"]
    on = load_file(tmp_path / "on" / "checkpoints" / "last.pt")["model"]
    stats = [k for k in on if k.endswith(("running_mean", "running_var"))]
    weights = [k for k in on if k not in stats and not k.endswith("num_batches_tracked")]
    assert stats and all(torch.equal(on[k], off[k]) for k in weights)  # the run's random stream was not touched
    assert any(not torch.allclose(on[k], off[k]) for k in stats)
    assert json.loads((tmp_path / "on" / "config.json").read_text())["precise_bn"] == 64


def test_flags_and_validation(tmp_path):
    args = build_parser().parse_args(["train", "--out", str(tmp_path / "r"), "--no-precise-bn"])
    assert train_config_from_args(args).precise_bn == 0
    args = build_parser().parse_args(["train", "--out", str(tmp_path / "r"), "--precise-bn", "1000"])
    assert train_config_from_args(args).precise_bn == 1000
    with pytest.raises(ConfigError, match="precise_bn"):
        TrainConfig(precise_bn=-1).replace()


def test_a_run_made_before_the_option_counts_as_trained_without_it():
    from cnnbench.config import config_differences

    old = {k: v for k, v in TrainConfig().to_dict().items() if k != "precise_bn"}
    assert config_differences(old, TrainConfig()) == "precise_bn: 0 -> 4096"
    assert config_differences(old, TrainConfig(precise_bn=0)) == ""

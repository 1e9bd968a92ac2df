"""The fast recipe's parts on the CPU: cutout, the moving average of the weights, flip test-time augmentation."""

import dataclasses

import pytest
import torch

from cnnbench.config import TrainConfig
from cnnbench.data.loader import cutout
from cnnbench.engine import fit
from cnnbench.engine.averaging import WeightAverage
from cnnbench.errors import ConfigError
from tests.conftest import TINY_MODEL

# Plumbing (averaging, compiling, the TTA column) on the tiny registered model: a full network would only cost time.
CIFAR_TINY = dict(
    model=TINY_MODEL,
    dataset="cifar10",
    limit_train=64,
    limit_test=40,
    batch_size=16,
    epochs=1,
    precise_bn=0,
    eval_batch_size=40,
    variant="small",
)


def test_cutout_blanks_one_square_per_image():
    x = torch.ones(64, 3, 16, 16)
    out = cutout(x, 4, torch.Generator().manual_seed(0))
    blanked = (out == 0).all(1)  # N x H x W: every channel zeroed together
    per_image = blanked.flatten(1).sum(1)
    assert per_image.max() == 16 and per_image.min() >= 4  # 4x4, clipped at the borders to at least 2x2
    for mask in blanked[:8]:
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        assert mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()  # one solid rectangle
    assert len({tuple(m.nonzero()[0].tolist()) for m in blanked}) > 10  # at random places
    assert torch.equal(cutout(x, 0, torch.Generator()), x)


def test_moving_average_follows_the_weights_with_warm_up():
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    average = WeightAverage(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(1.0)
    average.update(model)  # the first update copies
    assert average.module.weight.item() == pytest.approx(1.0)
    with torch.no_grad():
        model.weight.fill_(2.0)
    average.update(model)  # n=1: decay min(0.9, 2/11)
    assert average.module.weight.item() == pytest.approx(1.0 + (1 - 2 / 11) * 1.0)


def test_moving_average_matches_a_per_tensor_reference_and_resumes_its_count():
    """The multi-tensor update (no host read of the count) against the formula tensor by tensor, batch-norm
    statistics averaged and its step counter copied; a loaded average continues from the saved count."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    average = WeightAverage(model, decay=0.95)
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    for n in range(6):
        model(torch.randn(8, 3, 6, 6))  # moves the batch-norm statistics and counter
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        average.update(model)
        d = min(0.95, (1 + n) / (10 + n))
        for k, v in model.state_dict().items():
            reference[k] = v.clone() if n == 0 or not v.is_floating_point() else d * reference[k] + (1 - d) * v
    for k, v in average.module.state_dict().items():
        assert torch.allclose(v, reference[k], atol=1e-6), k
    resumed = WeightAverage(model, decay=0.95)
    resumed.load_state_dict(average.state_dict())
    assert resumed.updates == 6 and int(average.state_dict()["n_averaged"]) == 6


def test_ema_run_evaluates_the_average_and_resumes_it(tmp_path):
    from tests.test_train import StopAfter

    # digits are enough here (averaging has nothing to do with the images), and decode in no time
    cfg = TrainConfig(
        **{**CIFAR_TINY, "dataset": "mnist_demo", "epochs": 2, "ema": 0.9}, precision="fp32", deterministic=True
    )
    summary = fit(cfg, tmp_path / "run")
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert "ema_model" in state and int(state["ema"]["n_averaged"]) == 8  # 64 images / 16 = 4 steps x 2 epochs
    assert not torch.equal(state["ema_model"]["classifier.weight"], state["model"]["classifier.weight"])
    # the reported numbers are the average's: evaluating its weights again gives the same top-1
    from cnnbench.engine.evaluate_run import evaluate_run

    assert evaluate_run(tmp_path / "run")["top1"] == pytest.approx(summary["test_top1"])
    # an interrupted run resumes its average too: the same result as the uninterrupted run
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, tmp_path / "cut", callbacks=[StopAfter(1)])
    resumed = fit(cfg, tmp_path / "cut", resume=True)
    assert (resumed["test_loss"], resumed["test_top1"]) == (summary["test_loss"], summary["test_top1"])


@pytest.mark.data
def test_flip_tta_is_its_own_column(tmp_path):
    from cnnbench.data.loader import load_dataset
    from cnnbench.engine.evaluate import evaluate
    from cnnbench.engine.run_folder import open_run

    summary = fit(TrainConfig(**CIFAR_TINY), tmp_path / "run")
    run = open_run(tmp_path / "run")
    data = load_dataset("cifar10", None, run.config.data_options())
    args = (data, torch.device("cpu"), run.precision)
    plain = evaluate(run.model, data.test_x, data.test_y, *args)["logits"].float().softmax(1)
    mirrored = evaluate(run.model, data.test_x.flip(3), data.test_y, *args)["logits"].float().softmax(1)
    tta = ((plain + mirrored).argmax(1) == data.test_y).float().mean().item()
    assert summary["test_top1_tta"] == pytest.approx(tta, abs=1 / 40)  # the mean softmax of an image and its mirror
    digits = fit(TrainConfig(**{**CIFAR_TINY, "dataset": "mnist_demo"}), tmp_path / "digits")
    assert digits["test_top1_tta"] is None  # flips change digits: no TTA


def test_cutout_and_ema_are_checked():
    with pytest.raises(ConfigError, match="cutout must be at least 0"):
        TrainConfig(cutout=-1).replace()
    with pytest.raises(ConfigError, match=r"ema must be in \[0, 1\) .*the moving average's decay per step"):
        TrainConfig(ema=1.0).replace()


TINY_MNIST = dict(
    model=TINY_MODEL,
    dataset="mnist_demo",
    limit_train=64,
    limit_test=32,
    batch_size=16,
    epochs=1,
    precise_bn=0,
    eval_batch_size=32,
    variant="small",
    precision="fp32",
    deterministic=True,
)


def _broken_compile(module, mode="default"):
    def fail(*args, **kwargs):
        raise RuntimeError("Compiler: cc not found")

    return fail


def test_a_failing_compile_falls_back_to_eager(tmp_path, monkeypatch):
    import cnnbench.engine.train as train

    monkeypatch.setattr(train, "compile_model", _broken_compile)
    compiled = fit(TrainConfig(**TINY_MNIST, compile=True), tmp_path / "compiled")
    eager = fit(TrainConfig(**TINY_MNIST), tmp_path / "eager")
    assert "torch.compile failed (RuntimeError: Compiler: cc not found); trained without it." in compiled["warnings"]
    assert compiled["compile_s"] is None
    assert (compiled["train_loss"], compiled["test_top1"]) == (eager["train_loss"], eager["test_top1"])


def test_compiling_is_timed_apart_and_changes_nothing(tmp_path, monkeypatch):
    """torch.compile with its eager backend (fast, no C++ compiler): the warm-up that compiles before the first
    epoch leaves weights, statistics and random state as they were."""
    import cnnbench.engine.train as train

    monkeypatch.setattr(train, "compile_model", lambda module, mode="default": torch.compile(module, backend="eager"))
    compiled = fit(TrainConfig(**TINY_MNIST, compile=True), tmp_path / "compiled")
    eager = fit(TrainConfig(**TINY_MNIST), tmp_path / "eager")
    assert compiled["compile_s"] > 0 and not compiled["warnings"]
    assert compiled["train_loss"] == pytest.approx(eager["train_loss"], rel=1e-5)
    assert compiled["test_top1"] == eager["test_top1"]


def test_profile_reports_compiling_apart(monkeypatch):
    import cnnbench.analysis.profile as profile

    cfg = profile.ProfileConfig(batch_size=4, warmup=1, repeats=1, train=True, compile=True, channels_last=False)
    monkeypatch.setattr(profile, "compile_model", lambda module, mode="default": torch.compile(module, backend="eager"))
    record = profile.profile_model(TINY_MODEL, cfg)
    assert record["infer_compile_s"] > 0 and record["train_compile_s"] > 0 and record["train_images_per_s"] > 0
    assert record["channels_last"] is False and record["compile"] == "default"
    monkeypatch.setattr(profile, "compile_model", _broken_compile)
    record = profile.profile_model(TINY_MODEL, cfg)
    assert record["infer_compile_error"] == "RuntimeError: Compiler: cc not found" and record["infer_images_per_s"] > 0


def test_cuda_graph_modes_mark_each_compiled_step(tmp_path, monkeypatch):
    """reduce-overhead's CUDA graphs need every step marked as new (an H200 run failed without it): each warm-up
    call and each training step is marked in that mode, none in the default mode."""
    import cnnbench.analysis.profile as profile
    import cnnbench.engine.train as train

    marks = []
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(1))
    eager_compile = lambda module, mode="default": torch.compile(module, backend="eager")  # noqa: E731
    monkeypatch.setattr(train, "compile_model", eager_compile)
    monkeypatch.setattr(profile, "compile_model", eager_compile)
    cfg = TrainConfig(**TINY_MNIST, compile=True, compile_mode="reduce-overhead")
    summary = fit(cfg, tmp_path / "graphs")
    steps = summary["train_images"] // cfg.batch_size * cfg.epochs
    assert len(marks) == 3 + steps  # three warm-up calls record the graphs, then one mark per step
    marks.clear()
    fit(TrainConfig(**TINY_MNIST, compile=True), tmp_path / "default")
    assert marks == []
    pcfg = profile.ProfileConfig(batch_size=4, warmup=1, repeats=2, train=True, compile=True)
    profile.profile_model(TINY_MODEL, dataclasses.replace(pcfg, compile_mode="reduce-overhead"))
    assert len(marks) >= 2 * 3 + 2  # infer and train warm-ups, then every timed call

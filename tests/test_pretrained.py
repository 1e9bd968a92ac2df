"""Fine-tuning from pretrained weights. The "pretrained" files are torchvision models built here (no download)."""

import urllib.error

import pytest
import torch
import torch.nn.functional as F
import torchvision

from cnnbench.config import TrainConfig
from cnnbench.engine import fit
from cnnbench.engine import pretrained as pt
from cnnbench.engine.train import setup
from cnnbench.errors import ConfigError

TINY = dict(
    dataset="mnist_demo", limit_train=64, limit_test=32, batch_size=16, epochs=1, precise_bn=0, eval_batch_size=32
)


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    """torchvision's ResNet18 (random weights standing in for ImageNet's), saved as a user would save a state_dict."""
    torch.manual_seed(123)
    model = torchvision.models.resnet18(num_classes=1000)
    for m in model.modules():  # running statistics unlike a fresh model's, so that loading them is visible
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(model.state_dict(), path)
    return path, model.state_dict()


def test_body_loaded_strictly_head_replaced_grey_conv_summed(resnet18_file, tmp_path):
    path, source = resnet18_file
    run = setup(TrainConfig(model="resnet18", variant="paper", pretrained=str(path), **TINY), tmp_path, resume=False)
    state = run.model.state_dict()
    for name, value in source.items():
        if name.startswith("fc.") or name == "conv1.weight":
            continue
        torch.testing.assert_close(state[name].cpu(), value, msg=name)
    # the classifier is new, for MNIST's 10 classes
    assert state["fc.weight"].shape == (10, 512)
    # grey MNIST: the RGB stem summed over its input channels, which sees a grey image as RGB saw it repeated
    assert state["conv1.weight"].shape == (64, 1, 7, 7)
    grey = torch.rand(2, 1, 32, 32)
    torch.testing.assert_close(
        F.conv2d(grey, state["conv1.weight"].float().cpu()),
        F.conv2d(grey.repeat(1, 3, 1, 1), source["conv1.weight"]),
        rtol=1e-4,
        atol=1e-4,
    )
    # ImageNet's statistics (grey: their mean), not MNIST's
    assert run.data.mean.tolist() == pytest.approx([sum(pt.IMAGENET_MEAN) / 3])
    assert run.data.std.tolist() == pytest.approx([sum(pt.IMAGENET_STD) / 3])
    assert "resnet18.pth" in run.pretrained


def test_two_learning_rates(resnet18_file, tmp_path):
    path, _ = resnet18_file
    run = setup(
        TrainConfig(model="resnet18", variant="paper", pretrained=str(path), lr=0.05, backbone_lr_scale=0.1, **TINY),
        tmp_path,
        resume=False,
    )
    head = {id(p) for p in run.model.fc.parameters()}
    for group in run.optimizer.param_groups:
        in_head = {id(p) in head for p in group["params"]}
        assert len(in_head) == 1  # a group is all body or all head
        assert group["initial_lr"] == pytest.approx(0.05 if in_head == {True} else 0.005)
    n_params = sum(len(g["params"]) for g in run.optimizer.param_groups)
    assert n_params == len(list(run.model.parameters()))


def test_frozen_backbone_stays_frozen(resnet18_file, tmp_path):
    path, source = resnet18_file
    # precise BN on: it must leave a frozen body's statistics alone too
    cfg = TrainConfig(
        model="resnet18", variant="paper", pretrained=str(path), freeze_backbone=True, **{**TINY, "precise_bn": 4096}
    )
    summary = fit(cfg, tmp_path / "run")
    trained = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["model"]
    for name, value in source.items():  # weights and batch-norm statistics alike
        if name.startswith("fc.") or name == "conv1.weight" or name.endswith("num_batches_tracked"):
            continue
        torch.testing.assert_close(trained[name].float(), value, msg=name)
    initial = setup(cfg, tmp_path / "again", resume=False).model.state_dict()  # the same seed: the same new head
    assert not torch.allclose(initial["fc.weight"].cpu(), trained["fc.weight"].float())
    assert summary["pretrained"].startswith("state_dict file resnet18.pth")


def test_frozen_backbone_optimizer_holds_the_head_only(resnet18_file, tmp_path):
    path, _ = resnet18_file
    run = setup(
        TrainConfig(model="resnet18", variant="paper", pretrained=str(path), freeze_backbone=True, **TINY),
        tmp_path,
        resume=False,
    )
    optimized = [p for g in run.optimizer.param_groups for p in g["params"]]
    assert {id(p) for p in optimized} == {id(p) for p in run.model.fc.parameters()}


def test_weights_that_do_not_fit_are_named(resnet18_file, tmp_path):
    path, source = resnet18_file
    missing = {k: v for k, v in source.items() if k != "layer1.0.conv1.weight"}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(ConfigError, match="it has layer1.0.conv1.weight which they lack"):
        setup(
            TrainConfig(model="resnet18", variant="paper", pretrained=str(tmp_path / "missing.pth"), **TINY),
            tmp_path / "a",
            resume=False,
        )
    extra = {**source, "layer9.weight": torch.zeros(1)}
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(ConfigError, match="they have layer9.weight which it lacks"):
        setup(
            TrainConfig(model="resnet18", variant="paper", pretrained=str(tmp_path / "extra.pth"), **TINY),
            tmp_path / "b",
            resume=False,
        )
    # the small variant's 3x3 stem cannot take the 7x7 ImageNet stem
    with pytest.raises(
        ConfigError, match=r"conv1.weight is \(64, 3, 7, 7\) there and \(64, 1, 3, 3\) here.*--variant paper"
    ):
        setup(
            TrainConfig(model="resnet18", variant="small", pretrained=str(path), **TINY), tmp_path / "c", resume=False
        )


def test_imagenet_offline_names_where_torchvision_looks(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(ConfigError) as err:
        pt.load_pretrained("imagenet", "resnet18")
    message = str(err.value)
    assert "Could not get torchvision's ImageNet weights for resnet18" in message
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in message
    assert "--pretrained PATH" in message


def test_imagenet_for_a_model_torchvision_lacks():
    with pytest.raises(ConfigError, match="torchvision has no ImageNet weights for vgg11_lrn.*resnet18"):
        pt.load_pretrained("imagenet", "vgg11_lrn")


def test_freeze_without_weights_is_refused():
    with pytest.raises(ConfigError, match="--freeze-backbone keeps pretrained weights fixed"):
        TrainConfig(freeze_backbone=True).replace()


def test_fine_tune_from_a_cnnbench_run(tmp_path):
    """A run's folder as --pretrained: its weights, its variant and its normalisation; the body really starts there."""
    first = fit(TrainConfig(model="resnet18", variant="small", **TINY), tmp_path / "pre")
    run = setup(
        TrainConfig(model="resnet18", pretrained=str(tmp_path / "pre"), **{**TINY, "dataset": "mnist_demo"}),
        tmp_path / "ft",
        resume=False,
    )
    assert run.variant == "small"  # auto took the pretraining run's variant
    assert run.data.mean.tolist() == pytest.approx(first["normalization"]["mean"])
    pre = torch.load(tmp_path / "pre" / "checkpoints" / "last.pt", weights_only=True)["model"]
    torch.testing.assert_close(run.model.state_dict()["layer4.1.conv2.weight"].cpu(), pre["layer4.1.conv2.weight"])
    assert "cnnbench run pre (resnet18 on mnist_demo, epoch 1)" == run.pretrained


def test_study_compares_scratch_and_fine_tuned_rows(resnet18_file, tmp_path):
    from cnnbench.fileio import read_csv
    from cnnbench.study import resolve_study, run_study

    path, _ = resnet18_file
    options = {**TINY, "variant": "paper", "pretrained": str(path)}
    options.pop("dataset")
    spec = resolve_study(models=["resnet18"], datasets=["mnist_demo"], flag_options=options, with_scratch=True)
    assert [c.pretrained for c in spec.runs()] == [None, str(path)]
    run_study(spec, tmp_path / "study", log=lambda _: None)
    assert sorted(d.name for d in (tmp_path / "study" / "runs").iterdir()) == [
        "resnet18-from-resnet18.pth-mnist_demo-seed0",
        "resnet18-mnist_demo-seed0",
    ]
    rows = read_csv(tmp_path / "study" / "comparison.csv")
    assert sorted(r["variant"] for r in rows) == ["paper", "paper, fine-tuned from resnet18.pth"]
    assert "fine-tuned from resnet18.pth" in (tmp_path / "study" / "comparison.md").read_text()


def test_with_scratch_needs_weights():
    from cnnbench.study import resolve_study

    with pytest.raises(ConfigError, match="--with-scratch adds runs from scratch.*no --pretrained"):
        resolve_study(models=["resnet18"], datasets=["mnist_demo"], with_scratch=True)

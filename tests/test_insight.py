"""Insight: weight dynamics while training, and filters, feature maps, Grad-CAM, CKA and landscapes afterwards."""

import csv
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnbench import TrainConfig, fit
from cnnbench.analysis.insight.cka import linear_cka
from cnnbench.analysis.insight.dynamics import WeightDynamics, dead_channel_fractions
from cnnbench.analysis.insight.gradcam import grad_cam
from cnnbench.analysis.insight.landscape import dataset_loss, filter_normalized_direction, loss_along, trained_params
from cnnbench.analysis.insight.stages import default_cam_layer, model_stages
from cnnbench.cli import main
from cnnbench.engine.optim import make_optimizer
from cnnbench.engine.run import TrainingState
from cnnbench.models import create_model, list_models
from tests.conftest import TINY_MODEL

from .test_train import StopAfter

TINY = dict(
    model="resnet18", dataset="mnist", limit_train=128, limit_test=64, batch_size=32, lr=0.02, epochs=2, threads=1
)


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# -- while training ----------------------------------------------------------------------------------------------


class TwoLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.fc = nn.Linear(2, 2)

    def forward(self, x):
        return self.fc(F.relu(self.conv(x)).mean((2, 3)))


def fake_run(model, cfg, tmp_path):
    optimizer = make_optimizer(cfg, model)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    data = SimpleNamespace(
        train_x=torch.randint(0, 256, (4, 1, 5, 5), dtype=torch.uint8),
        mean=torch.tensor([0.5]),
        std=torch.tensor([0.25]),
    )
    return SimpleNamespace(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        data=data,
        config=cfg,
        out=tmp_path,
        state=TrainingState(),
        device=torch.device("cpu"),
        precision="fp32",
    )


def test_update_ratio_equals_a_hand_computed_sgd_step(tmp_path):
    """Two steps of Nesterov SGD with momentum and weight decay, computed by hand from the set gradients."""
    torch.manual_seed(0)
    model = TwoLayers()
    cfg = TrainConfig(lr=0.1, momentum=0.9, weight_decay=0.01, channels_last=False)
    run = fake_run(model, cfg, tmp_path)
    callback = WeightDynamics(rows_per_epoch=2)  # 2 steps in the epoch: both recorded
    callback.on_train_start(run)
    callback.on_epoch_start(run, 1, 2)
    w0 = model.conv.weight.detach().double().clone().numpy()
    grads = [torch.randn_like(model.conv.weight) for _ in range(2)]
    for g in grads:
        run.optimizer.zero_grad()
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        model.conv.weight.grad = g.clone()
        run.optimizer.step()
        run.scheduler.step()
    callback.on_epoch_end(run, {"epoch": 1})
    # by hand: buf = momentum * buf + (g + wd * w); w -= lr * ((g + wd * w) + momentum * buf)   (Nesterov)
    lr, m, wd = 0.1, 0.9, 0.01
    w, buf, expected = w0.copy(), np.zeros_like(w0), []
    for g in grads:
        d = g.double().numpy() + wd * w
        buf = m * buf + d
        new = w - lr * (d + m * buf)
        expected.append(
            (
                np.linalg.norm(new - w) / np.linalg.norm(w),
                np.linalg.norm(g.double().numpy()),
                np.linalg.norm(new - w0),
                np.linalg.norm(new),
            )
        )
        w = new
    rows = [r for r in read_rows(tmp_path / "dynamics.csv") if r["layer"] == "conv"]
    assert [int(r["step"]) for r in rows] == [1, 2]
    for row, (ratio, grad, dist, norm) in zip(rows, expected):
        assert float(row["update_ratio"]) == pytest.approx(ratio, rel=1e-4)
        assert float(row["grad_norm"]) == pytest.approx(grad, rel=1e-4)
        assert float(row["dist_from_init"]) == pytest.approx(dist, rel=1e-4)
        assert float(row["weight_norm"]) == pytest.approx(norm, rel=1e-4)


def test_dead_channels_are_counted_per_use_of_a_relu():
    model = create_model("resnet18", num_classes=10, in_chans=1, variant="small")
    with torch.no_grad():
        model.layer4[1].bn2.bias.fill_(-1e3)  # the block's last ReLU silences every channel...
        model.layer4[1].bn2.weight.zero_()
    fractions = dead_channel_fractions(model, torch.randn(8, 1, 32, 32))
    stage, channels = fractions["layer4"]
    # layer4 runs its ReLU module 4 times (2 blocks x 2 uses) on 512 channels; the last use is dead, the others
    # (fed by the shortcut too) are not all dead
    assert channels == 4 * 512
    assert 0.25 <= stage < 1.0
    assert fractions["stem"][0] < 0.5


@pytest.fixture(scope="module")
def dynamic_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "dyn"
    fit(TrainConfig(**TINY), out, callbacks=[WeightDynamics()])
    return out


@pytest.mark.data
def test_dynamics_files_of_a_run(dynamic_run):
    rows = read_rows(dynamic_run / "dynamics.csv")
    layers = {r["layer"] for r in rows}
    assert len(layers) == 21  # resnet18: 17 convs in the stem and blocks + 3 shortcut convs + fc
    steps = sorted({(int(r["epoch"]), int(r["step"])) for r in rows})
    assert steps == [(e, s) for e in (1, 2) for s in (1, 2, 3, 4)]  # 4 steps an epoch, every one recorded
    assert {r["stage"] for r in rows} == {"stem", "layer1", "layer2", "layer3", "layer4", "head"}
    assert all(float(r["update_ratio"]) > 0 and float(r["dist_from_init"]) > 0 for r in rows)
    dead = read_rows(dynamic_run / "dead_units.csv")
    assert [(r["epoch"], r["stage"]) for r in dead][:5] == [
        ("1", s) for s in ("stem", "layer1", "layer2", "layer3", "layer4")
    ]
    with np.load(dynamic_run / "filters.npz") as z:
        assert sorted(z.files) == ["epoch_0", "epoch_1", "epoch_2"]
        assert z["epoch_0"].shape == (64, 1, 3, 3)
        assert not np.allclose(z["epoch_0"], z["epoch_2"])
    assert (dynamic_run / "checkpoints" / "init.pt").exists()


@pytest.mark.data
@pytest.mark.slow
def test_dynamics_survive_an_interruption(tmp_path, dynamic_run):
    with pytest.raises(KeyboardInterrupt):
        fit(TrainConfig(**TINY), tmp_path / "cut", callbacks=[WeightDynamics(), StopAfter(1)])
    fit(TrainConfig(**TINY), tmp_path / "cut", resume=True, callbacks=[WeightDynamics()])
    whole, resumed = read_rows(dynamic_run / "dynamics.csv"), read_rows(tmp_path / "cut" / "dynamics.csv")
    assert [(r["epoch"], r["step"], r["layer"]) for r in resumed] == [
        (r["epoch"], r["step"], r["layer"]) for r in whole
    ]
    with np.load(tmp_path / "cut" / "filters.npz") as z:
        assert sorted(z.files) == ["epoch_0", "epoch_1", "epoch_2"]


# -- every model's stages ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["small", "paper"])
@pytest.mark.parametrize("name", list_models())
def test_stages_capture_maps_of_every_model(name, variant):
    with torch.device("meta"):
        model = create_model(name, num_classes=10, in_chans=3, variant=variant)
        x = torch.empty(2, 3, 64, 64)
    stages = model_stages(model)
    modules = dict(model.named_modules())
    shapes = {}
    handles = [
        modules[s.output].register_forward_hook(lambda _m, _i, out, n=s.name: shapes.__setitem__(n, out.shape))
        for s in stages
    ]
    model(x)
    for h in handles:
        h.remove()
    # one per max-pool: the zoo's VGGs have five, the tiny test models two
    blocks = 2 if name.startswith("tiny") else 5
    assert [s.name for s in stages] == (
        ["stem", "layer1", "layer2", "layer3", "layer4"]
        if name.startswith("resnet")
        else [f"block{i}" for i in range(1, blocks + 1)]
    )
    sizes = [shapes[s.name][-1] for s in stages]
    assert all(len(shapes[s.name]) == 4 and shapes[s.name][0] == 2 for s in stages)
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] < sizes[0]
    layer = default_cam_layer(model, x)
    assert layer in modules


# -- after training ----------------------------------------------------------------------------------------------


@pytest.mark.data
@pytest.mark.slow
def test_grad_cam_finds_a_planted_patch():
    """Class 1 images carry a bright 4x4 patch somewhere in noise: Grad-CAM must light the patch up."""
    g = torch.Generator().manual_seed(0)

    def batch(n):
        x = torch.rand(n, 1, 16, 16, generator=g) * 0.5
        y = torch.randint(0, 2, (n,), generator=g)
        where = torch.randint(0, 12, (n, 2), generator=g)
        mask = torch.zeros(n, 16, 16, dtype=torch.bool)
        for i in range(n):
            r, c = where[i].tolist()
            mask[i, r : r + 4, c : c + 4] = True
            if y[i] == 1:
                x[i, 0, r : r + 4, c : c + 4] = 1.0
        return x, y, mask

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 2),
    )
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(150):
        x, y, _ = batch(64)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    x, y, mask = batch(200)
    assert (model(x).argmax(1) == y).float().mean() > 0.95
    cams = grad_cam(model, "3", x[y == 1], torch.ones(int((y == 1).sum()), dtype=torch.long))
    inside = cams[mask[y == 1]].mean()
    outside = cams[~mask[y == 1]].mean()
    assert inside > 3 * outside


def test_linear_cka_properties():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 20, generator=g)
    q, _ = torch.linalg.qr(torch.randn(20, 20, generator=g))
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, 3.0 * x @ q) == pytest.approx(1.0)  # orthogonal transform and isotropic scaling
    y = torch.randn(50, 7, generator=g)
    # the feature-space formula of Kornblith et al. (their eq. 5), computed independently
    xc, yc = (x - x.mean(0)).double(), (y - y.mean(0)).double()
    expected = (yc.T @ xc).norm() ** 2 / ((xc.T @ xc).norm() * (yc.T @ yc).norm())
    assert linear_cka(x, y) == pytest.approx(float(expected))
    assert linear_cka(x, y) < 0.5
    assert linear_cka(x.view(50, 4, 5), y) == pytest.approx(linear_cka(x, y))  # maps are flattened


def test_landscape_at_distance_zero_is_the_model_loss():
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=10, in_chans=1, variant="small")
    model.eval()
    images = torch.randint(0, 256, (20, 1, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (20,))
    data = SimpleNamespace(mean=torch.tensor([0.3]), std=torch.tensor([0.2]))
    with torch.no_grad():
        direct = F.cross_entropy(model((images.float() / 255 - 0.3) / 0.2), labels).item()
    before = trained_params(model)
    direction = filter_normalized_direction(model, torch.Generator().manual_seed(1))
    losses = loss_along(model, before, [direction], [(-0.5,), (0.0,), (0.5,)], images, labels, data)
    assert losses[1] == pytest.approx(direct, rel=1e-4)
    assert losses[0] != pytest.approx(direct, rel=1e-3)
    for name, p in model.named_parameters():  # restored
        assert torch.equal(p, before[name])
    w = model.layer1[0].conv1.weight
    assert torch.allclose(
        direction["layer1.0.conv1.weight"].flatten(1).norm(dim=1), w.flatten(1).norm(dim=1), rtol=1e-4
    )
    assert not direction["bn1.weight"].any() and not direction["fc.bias"].any()
    # batch statistics leave the running statistics untouched
    mean = model.bn1.running_mean.clone()
    dataset_loss(model, images, labels, data, batch_statistics=True)
    assert torch.equal(model.bn1.running_mean, mean)


@pytest.mark.data
@pytest.mark.slow
def test_insight_of_a_run_and_of_a_study(tmp_path, dynamic_run, capsys):
    import shutil

    study = tmp_path / "study"
    shutil.copytree(dynamic_run, study / "runs" / "resnet18-mnist-seed0")
    plain = study / "runs" / "vgg11_bn-mnist-seed0"
    fit(TrainConfig(**{**TINY, "model": "vgg11_bn"}), plain)  # without --dynamics
    args = ["--cka-images", "40", "--landscape-images", "40", "--images", "3"]
    assert main(["insight", str(plain), *args]) == 0
    assert "no dynamics.csv" in capsys.readouterr().out.lower()
    assert main(["insight", str(study), *args]) == 0
    said = capsys.readouterr().out
    assert "1 run(s) to go: about" in said  # a time to finish, as it goes
    assert "for the landscape's other" in said  # timed on the first slice (resnet18 also has its init line)
    cross = read_rows(study / "insight" / "cka-mnist-seed0-resnet18-vs-vgg11_bn.csv")
    assert [r["stage"] for r in cross] == ["stem", "layer1", "layer2", "layer3", "layer4"]
    assert all(0 <= float(v) <= 1 + 1e-9 for r in cross for k, v in r.items() if k != "stage")
    landscape = read_rows(study / "runs" / "resnet18-mnist-seed0" / "insight" / "landscape.csv")
    assert {r["slice"] for r in landscape} == {"direction", "init_to_final"}
    assert {r["slice"] for r in read_rows(plain / "insight" / "landscape.csv")} == {"direction"}  # no init.pt
    page = (study / "report.html").read_text()
    assert "How the weights update" in page and "What the networks learn" in page
    assert page.count('weight dynamics"') == 1  # only the run trained with --dynamics has curves


@pytest.mark.data
def test_insight_refuses_an_unknown_layer(dynamic_run, capsys):
    assert main(["insight", str(dynamic_run), "--layer", "layer9"]) == 2
    err = capsys.readouterr().err
    assert "layer9" in err and "layer4" in err and "Traceback" not in err


@pytest.mark.data
def test_tensorboard_logs_metrics_dynamics_and_histograms(tmp_path):
    pytest.importorskip("tensorboard")  # in the dev extra; users without it get a clear error instead
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--model",
                "vgg11_bn",
                "--dataset",
                "mnist",
                "--limit-train",
                "64",
                "--limit-test",
                "32",
                "--batch-size",
                "32",
                "--epochs",
                "1",
                "--threads",
                "1",
                "--dynamics",
                "--tensorboard",
                str(tmp_path / "tb"),
                "--out",
                str(run),
            ]
        )
        == 0
    )
    events = EventAccumulator(str(tmp_path / "tb" / "run"), size_guidance={"histograms": 0}).Reload()
    scalars = events.Tags()["scalars"]
    assert "epoch/test_top1" in scalars and "update_ratio/features.0" in scalars and "grad_norm/classifier" in scalars
    assert "weights/features.0" in events.Tags()["histograms"]
    assert len(events.Scalars("update_ratio/features.0")) == 2  # 2 steps, both recorded


def test_weights_vs_init_measures_direction_and_scale():
    from cnnbench.analysis.insight.evaluate import weights_vs_init

    torch.manual_seed(0)
    model = TwoLayers()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.conv.weight.mul_(0.5)  # same direction, half the size
        model.fc.weight.copy_(torch.randn_like(model.fc.weight))  # a new direction
    rows = {r["layer"]: r for r in weights_vs_init(model, init, model_stages(model))}
    assert rows["conv"]["cosine"] == pytest.approx(1.0) and rows["conv"]["final_norm"] == pytest.approx(
        rows["conv"]["init_norm"] / 2
    )
    assert abs(rows["fc"]["cosine"]) < 0.99


@pytest.mark.data
def test_the_2d_landscape_is_drawn_in_the_report(tmp_path):
    from cnnbench.fileio import read_csv
    from cnnbench.report.insight import landscape_plane, run_insight_figures

    run = tmp_path / "run"
    fit(TrainConfig(**{**TINY, "model": TINY_MODEL, "epochs": 1}), run)
    args = ["--cka-images", "20", "--landscape-images", "20", "--images", "2", "--landscape", "2d"]
    assert main(["insight", str(run), *args]) == 0
    x, y, loss = landscape_plane(run)
    assert x.shape == y.shape == loss.shape and x.shape[0] >= 3
    assert x[0, 0] == y[0, 0] == -1.0 and x[0, -1] == 1.0 and y[-1, 0] == 1.0  # x across a row, y down
    centre = loss[x.shape[0] // 2, x.shape[1] // 2]
    assert centre == pytest.approx(loss.min(), rel=0.5)  # the trained weights sit near the plane's lowest loss
    figures = run_insight_figures(run, "tiny", read_csv(run / "metrics.csv"))["figures"]
    assert figures["landscape_plane"].exists()

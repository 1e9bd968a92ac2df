import csv
import json
import re
import shutil
from pathlib import Path

import pytest

from cnnbench.cli import main
from cnnbench.config import TrainConfig
from cnnbench.errors import ConfigError
from cnnbench.study import PRESETS, StudySpec, resolve_study, run_study
from tests.conftest import CHROMIUM, open_in_chromium

TINY = TrainConfig(epochs=2, limit_train=160, limit_test=80, batch_size=32, lr=0.01)
MODERN_MODELS = ("vgg16_bn", "resnet18")
STUDY_BASE = TINY.replace(val_split=40)  # the fixture's study holds out 40 training images for validation


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A real, tiny study: two models x one data set x two seeds."""
    out = tmp_path_factory.mktemp("study") / "tiny"
    spec = StudySpec(("vgg11_bn", "vgg13_bn"), ("mnist_demo",), (0, 1), STUDY_BASE)
    report = run_study(spec, out, log=lambda _: None)
    return out, report


@pytest.mark.data
@pytest.mark.slow  # trains the four-run study fixture
def test_study_writes_every_run_and_artifact(study):
    out, report = study
    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert runs == [
        "vgg11_bn-mnist_demo-seed0",
        "vgg11_bn-mnist_demo-seed1",
        "vgg13_bn-mnist_demo-seed0",
        "vgg13_bn-mnist_demo-seed1",
    ]
    for run in (out / "runs").iterdir():
        for name in [
            "summary.json",
            "metrics.csv",
            "curves.png",
            "confusion.png",
            "misclassified.png",
            "per_class.csv",
        ]:
            assert (run / name).stat().st_size > 0, (run.name, name)
    assert (out / "datasets" / "mnist_demo" / "samples.png").exists()
    assert (out / "datasets" / "mnist_demo" / "accuracy.png").exists()
    assert report == out / "report.html"
    # the per-stage architecture view, one sentence per model computed from its own counts
    assert (out / "datasets" / "mnist_demo" / "architecture.png").stat().st_size > 0
    html = report.read_text()
    assert "Where the parameters and the computation go" in html
    assert re.search(r"vgg11_bn: \d+% of its \d+ M MACs sit in block\d", html)


@pytest.mark.data
@pytest.mark.slow  # trains the four-run study fixture
def test_report_shows_the_numbers_of_comparison_csv(study):
    """Each model's top-1 (mean ± std, t-interval, range), top-5 and loss in report.html equal comparison.csv's."""
    out, report = study
    page = report.read_text()
    with open(out / "comparison.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    for r in rows:
        v = {
            k: float(r[k])
            for k in (
                "test_top1",
                "test_top1_std",
                "test_top1_mean_ci_low",
                "test_top1_mean_ci_high",
                "test_top1_min",
                "test_top1_max",
                "test_top5",
                "test_top5_std",
                "test_loss",
            )
        }
        spread = f" ± {v['test_top1_std'] * 100:.2f}" if v["test_top1_std"] else ""
        top1 = (
            f"{v['test_top1']:.2%}{spread} [{v['test_top1_mean_ci_low']:.2%}, "
            f"{v['test_top1_mean_ci_high']:.2%}] ({v['test_top1_min']:.2%} to {v['test_top1_max']:.2%})"
        )
        top5 = f"{v['test_top5']:.2%}" + (f" ± {v['test_top5_std'] * 100:.2f}" if v["test_top5_std"] else "")
        row_html = f'<tr><td class="text">{r["model"]}<span class="sub">'
        cells = page.split(row_html, 1)[1].split("</tr>", 1)[0].replace("&#177;", "±")
        assert f'<td data-label="test top-1">{top1}</td>' in cells, r["model"]
        assert f'<td data-label="test top-5">{top5}</td>' in cells
        assert f'<td class="num" data-label="test loss">{v["test_loss"]:.4f}</td>' in cells


@pytest.mark.data
@pytest.mark.slow  # trains the four-run study fixture
def test_comparison_table_aggregates_seeds(study):
    out, _ = study
    with open(out / "comparison.csv") as f:
        rows = list(csv.DictReader(f))
    required = [
        "model",
        "variant",
        "dataset",
        "data_source",
        "seeds",
        "params",
        "macs",
        "test_loss",
        "test_top1",
        "test_top5",
        "test_top1_std",
        "train_time_s",
        "images_per_s",
        "infer_images_per_s",
        "peak_memory_mb",
        "device",
        "precision",
    ]
    assert all(c in rows[0] for c in required)
    # the figures `cnnbench profile` gives are measured in every run too: a process needs >100 MB, and
    # evaluation (no backward pass, large batches) is faster than training
    assert all(float(r["peak_memory_mb"]) > 100 for r in rows)
    assert all(float(r["infer_images_per_s"]) > float(r["images_per_s"]) for r in rows)
    assert [r["model"] for r in rows] == ["vgg11_bn", "vgg13_bn"]
    for row in rows:
        tops = [
            json.loads((out / "runs" / f"{row['model']}-mnist_demo-seed{s}" / "summary.json").read_text())["test_top1"]
            for s in (0, 1)
        ]
        assert float(row["test_top1"]) == pytest.approx(sum(tops) / 2)
        assert row["seeds"] == "0 1" and row["variant"] == "small"
    md = (out / "comparison.md").read_text()
    assert "| vgg11_bn | small (global pool + one FC) | 2 | 2 |" in md and "Table 3" in md
    # --val-split: the held-out images' accuracy is shown, and labelled, beside the test set's
    assert all(r["evaluated_on"] == "test" and r["val_images"] == "40" and 0 <= float(r["val_top1"]) <= 1 for r in rows)
    assert "validation top-1" in md and "validation top-1" in (out / "report.html").read_text()


@pytest.mark.data
@pytest.mark.slow  # trains the four-run study fixture
def test_pairs_are_tested_on_the_runs_own_predictions(study):
    """McNemar's discordant counts come from the saved test predictions: (b - c) / n is the top-1 difference."""
    out, _ = study
    with open(out / "pairs_by_seed.csv") as f:
        per_seed = list(csv.DictReader(f))
    assert [r["seed"] for r in per_seed] == ["0", "1"]
    for r in per_seed:
        a, b = (
            json.loads((out / "runs" / f"{r[k]}-mnist_demo-seed{r['seed']}" / "summary.json").read_text())
            for k in ("model_a", "model_b")
        )
        n = a["test_images"]
        assert (int(r["mcnemar_b"]) - int(r["mcnemar_c"])) / n == pytest.approx(
            a["test_top1"] - b["test_top1"], abs=1e-6
        )
        assert float(r["diff_ci_low"]) <= float(r["diff_top1"]) <= float(r["diff_ci_high"])
    with open(out / "pairs.csv") as f:
        (pair,) = list(csv.DictReader(f))
    assert pair["seeds"] == "0 1" and pair["ci_method"] == "paired t over 2 seeds"
    assert float(pair["mcnemar_p_largest"]) == pytest.approx(max(float(r["mcnemar_p"]) for r in per_seed))


@pytest.mark.data
@pytest.mark.slow  # trains the four-run study fixture
def test_rerun_skips_finished_runs(study):
    out, _ = study
    before = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/summary.json")}
    spec = StudySpec(("vgg11_bn", "vgg13_bn"), ("mnist_demo",), (0, 1), STUDY_BASE)
    messages = []
    run_study(spec, out, log=messages.append)
    assert messages == ["mnist_demo: all 4 runs already finished"]
    assert before == {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/summary.json")}


@pytest.mark.data
@pytest.mark.slow  # trains the four-run study fixture
def test_finished_run_with_other_settings_is_not_mixed_in(study, tmp_path):
    out, _ = study
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    spec = StudySpec(("vgg11_bn",), ("mnist_demo",), (0,), STUDY_BASE.replace(lr=0.02))
    with pytest.raises(ConfigError, match=r"other settings than this study asks for \(lr: 0.01 -> 0.02\)"):
        run_study(spec, copy, log=lambda _: None)
    assert (
        json.loads((copy / "runs" / "vgg11_bn-mnist_demo-seed0" / "summary.json").read_text())["config"]["lr"] == 0.01
    )


def test_settings_missing_from_an_older_run_count_as_their_defaults():
    from cnnbench.config import config_differences

    older = {k: v for k, v in TINY.to_dict().items() if k != "crop_padding"}  # saved before the option existed
    assert config_differences(older, TINY) == ""
    assert config_differences(older, TINY.replace(crop_padding=2)) == "crop_padding: 4 -> 2"


def test_published_modern_study_is_what_the_preset_trains():
    """The docs and their results quote studies/modern as the modern preset's results: a preset change must rerun it."""
    from cnnbench.config import config_differences
    from cnnbench.layout import run_dir_for

    studies = Path(__file__).resolve().parents[1] / "studies"
    preset_runs = {run_dir_for(studies, c).name: c for c in resolve_study("modern", seeds=(0, 1, 2, 3)).runs()}
    # studies/modern holds every run of the preset; the second seed and the two-seed report are quoted beside it.
    assert {run_dir_for(studies, c).name for c in resolve_study("modern").runs()} <= {
        d.name for d in (studies / "modern" / "runs").iterdir()
    }
    for study in (
        "modern",
        "modern-seed1",
        "modern-seed2",
        "modern-seed3",
        "modern-cifar10-2seeds",
        "modern-cifar10-seeds",
        "modern-mnist",
    ):
        run_dirs = sorted((studies / study / "runs").iterdir())
        assert run_dirs, study
        for run_dir in run_dirs:
            saved = json.loads((run_dir / "config.json").read_text())
            assert config_differences(saved, preset_runs[run_dir.name]) == "", f"{study}/{run_dir.name}"


@pytest.mark.data
@pytest.mark.slow  # trains the four-run study fixture
def test_report_rebuilds_from_run_folders_alone(study, tmp_path):
    out, _ = study
    copy = tmp_path / "R&D <copy>"  # a name that needs escaping, once
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("*.pt", "predictions.npz"))
    (copy / "report.html").unlink()
    assert main(["report", str(copy)]) == 0
    text = (copy / "report.html").read_text()
    assert "<title>cnnbench study: R&amp;D &lt;copy&gt;</title>" in text
    assert "Findings" in text and "vgg13_bn" in text and "data:image/png;base64," in text
    assert "http://" not in text and "https://" not in text  # self-contained: nothing fetched


@pytest.mark.data
@pytest.mark.slow  # trains the four-run study fixture
@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
@pytest.mark.parametrize("width", [1280, 390])
def test_report_renders_in_headless_chromium_on_a_laptop_and_a_phone(study, width):
    """Every figure loads; on a laptop no table is wider than its box; on a phone each pair's verdict, difference
    and adjusted p and each model's top-1 are on screen without scrolling sideways; no Markdown shows raw."""
    _, report = study
    seen = open_in_chromium(report, width)
    assert seen["errors"] == []
    widths = seen["image_widths"]
    assert len(widths) >= 4 * 3 + 2 and all(w > 0 for w in widths)
    assert seen["page_width"] <= width and "`" not in seen["text"]
    assert seen["key_cells"] >= 3 and seen["key_cells_off_screen"] == 0
    assert seen["zoom_opens"] and seen["zoom_closes"]
    if width >= 1280:
        assert seen["tables_overflowing"] == 0


def test_presets_are_complete():
    assert set(PRESETS) == {"demo", "paper", "modern", "fast"}
    paper = resolve_study("paper")
    assert paper.models == ("vgg16", "resnet18") and paper.base.variant == "paper"
    assert {(c.dataset, c.epochs) for c in paper.runs()} == {("mnist", 5), ("cifar10", 25)}
    modern = {(c.model, c.dataset): c for c in resolve_study("modern").runs()}
    assert (modern["vgg16_bn", "mnist"].epochs, modern["vgg16_bn", "mnist"].batch_size) == (2, 128)
    assert (modern["resnet18", "cifar10"].epochs, modern["resnet18", "cifar10"].batch_size) == (8, 64)
    assert resolve_study("demo").datasets == ("mnist_demo",)
    fast = {c.model: c for c in resolve_study("fast").runs()}
    assert set(fast) == {"vgg16_bn", "resnet18"}
    for c in fast.values():
        assert (c.dataset, c.epochs, c.batch_size, c.lr, c.cutout, c.ema, c.precise_bn) == (
            "cifar10",
            40,
            512,
            0.4,
            8,
            0.99,
            4096,
        )


def test_command_line_options_win_over_a_presets_per_dataset_settings(tmp_path):
    from cnnbench.cli import build_parser, study_spec_from_args

    def runs(*argv):
        spec = study_spec_from_args(build_parser().parse_args(["compare", "--preset", "modern", *argv]))
        return {c.dataset: c for c in spec.runs()}

    plain = runs()
    assert (plain["cifar10"].batch_size, plain["cifar10"].lr, plain["mnist"].lr) == (64, 0.05, 0.1)
    flags = runs("--batch-size", "32", "--epochs", "1")
    assert {(c.batch_size, c.epochs) for c in flags.values()} == {(32, 1)}
    assert flags["cifar10"].lr == 0.05  # not set by the user: still the preset's
    (tmp_path / "c.yaml").write_text("lr: 0.2\n")
    from_file = runs("--config", str(tmp_path / "c.yaml"))
    assert {c.lr for c in from_file.values()} == {0.2} and from_file["cifar10"].batch_size == 64


def test_compare_rejects_unknown_names_before_training(tmp_path, capsys):
    assert main(["compare", "--models", "vgg16_bn,resnet99", "--out", str(tmp_path / "s")]) == 2
    assert "Unknown model 'resnet99'" in capsys.readouterr().err
    assert main(["compare", "--datasets", "mnsit", "--out", str(tmp_path / "s")]) == 2
    assert "Did you mean 'mnist'" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


@pytest.mark.data
@pytest.mark.slow
def test_robustness_of_a_study_is_in_its_report_and_survives_a_rebuild(study, tmp_path):
    out, _ = study
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    assert (
        main(
            [
                "robustness",
                str(copy),
                "--limit-test",
                "20",
                "--corruptions",
                "shot_noise,rotate",
                "--severities",
                "1,5",
                "--eps",
                "0.1",
                "--baseline",
                "vgg13_bn",
                "--no-masking-checks",  # tested on their own (test_attacks.py); here the report is under test
            ]
        )
        == 0
    )

    def rows():
        with open(copy / "comparison.csv") as f:
            return {r["model"]: r for r in csv.DictReader(f)}

    for rebuild in (False, True):
        if rebuild:  # `cnnbench report` picks the results up from the run folders (its own --baseline)
            assert main(["report", str(copy), "--baseline", "vgg13_bn"]) == 0
        r = rows()
        # two of the set's corruptions ran: no benchmark mCE is claimed (the set's label says what ran)
        assert r["vgg13_bn"]["mce"] == "" and r["vgg13_bn"]["mce_baseline"] == "vgg13_bn"
        assert r["vgg11_bn"]["mce"] == "" and r["vgg11_bn"]["robust_images"] == "20"
        assert 0 <= float(r["vgg11_bn"]["mean_corruption_top1"]) <= 1 and r["vgg11_bn"]["adv_eps"] == "0.1"
        html = (copy / "report.html").read_text()
        assert "Robustness" in html and "MNIST-C-style" in html and "relative to <b>vgg13_bn</b>" in html
        assert "2 of its 13 corruptions: shot_noise, rotate" in html
        md = (copy / "comparison.md").read_text()
        assert "Robustness (MNIST-C-style" in md and "| vgg13_bn | 2 |" in md and "fgsm eps 0.1" in md
    assert (copy / "datasets" / "mnist_demo" / "robustness_eps.png").exists()
    with open(copy / "transfer.csv") as f:  # PGD made on each model, shown to the other of its seed
        transfer = list(csv.DictReader(f))
    assert sorted((t["seed"], t["source"], t["target"]) for t in transfer) == [
        (seed, a, b) for seed in ("0", "1") for a, b in (("vgg11_bn", "vgg13_bn"), ("vgg13_bn", "vgg11_bn"))
    ]
    assert "Transfer attacks" in (copy / "report.html").read_text()
    assert main(["report", str(copy), "--baseline", "resnet18"]) == 2


@pytest.mark.data
@pytest.mark.slow  # trains the four-run study fixture
def test_compare_robustness_measures_every_run_after_training(study, tmp_path):
    from cnnbench.analysis.robustness.evaluate import RobustnessConfig

    out, _ = study
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    spec = StudySpec(("vgg11_bn", "vgg13_bn"), ("mnist_demo",), (0, 1), STUDY_BASE)
    cfg = RobustnessConfig(corruptions=("rotate",), severities=(2,), attacks=(), limit_test=10)
    run_study(spec, copy, log=lambda _: None, robustness=cfg)  # every run is finished: robustness only
    results = [json.loads(p.read_text()) for p in sorted((copy / "runs").glob("*/robustness.json"))]
    assert len(results) == 4 and all(r["images"] == 10 and list(r["corruptions"]) == ["rotate"] for r in results)


def test_published_robustness_is_the_default_run():
    """docs/RESULTS.md quotes studies/modern-mnist's robustness as `cnnbench robustness`'s defaults on a CPU."""
    from cnnbench.analysis.robustness.corruptions import CIFAR, DIGITS
    from cnnbench.analysis.robustness.evaluate import CPU_DEFAULT_IMAGES, DIGIT_ATTACK, NATURAL_ATTACK

    studies = Path(__file__).resolve().parents[1] / "studies"
    for run, corruptions, attack in [
        (f"modern-mnist/runs/{m}-mnist-seed0", DIGITS, DIGIT_ATTACK) for m in MODERN_MODELS
    ] + [(f"modern-seed2/runs/{m}-cifar10-seed2", CIFAR, NATURAL_ATTACK) for m in MODERN_MODELS]:
        r = json.loads((studies / run / "robustness.json").read_text())
        assert (
            r["images"] == CPU_DEFAULT_IMAGES
            and r["source"] == "generated"
            and list(r["corruptions"]) == list(corruptions)
        )
        assert all(list(sev) == ["1", "2", "3", "4", "5"] for sev in r["corruptions"].values())
        assert (
            r["attack_settings"]["eps"] == pytest.approx(list(attack.eps))
            and r["attack_settings"]["pgd_steps"] == attack.steps
        )


def test_published_insight_is_the_default_run():
    """docs/RESULTS.md quotes studies/modern-seed2's dynamics and insight as `compare --insight` writes them."""
    from dataclasses import asdict

    from cnnbench.analysis.insight.evaluate import InsightConfig

    study = Path(__file__).resolve().parents[1] / "studies" / "modern-seed2"
    for model in MODERN_MODELS:
        run = study / "runs" / f"{model}-cifar10-seed2"
        info = json.loads((run / "insight" / "insight.json").read_text())
        assert info["settings"] == asdict(InsightConfig()) and info["notes"] == []
        epochs = {int(line.split(",")[0]) for line in (run / "dynamics.csv").read_text().splitlines()[1:]}
        assert epochs == set(range(1, 9))
    assert (study / "insight" / "cka-cifar10-seed2-resnet18-vs-vgg16_bn.csv").exists()


@pytest.mark.data
@pytest.mark.slow
def test_compare_through_the_command_line_on_a_tiny_slice(tmp_path, capsys):
    out = tmp_path / "cli-study"
    argv = [
        "compare",
        "--models",
        "vgg11_bn,resnet18",
        "--datasets",
        "mnist",
        "--limit-train",
        "64",
        "--limit-test",
        "32",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--threads",
        "1",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    assert f"report: {out / 'report.html'}" in capsys.readouterr().out
    with open(out / "comparison.csv", newline="") as f:
        rows = {r["model"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"vgg11_bn", "resnet18"} and all(r["test_images"] == "32" for r in rows.values())
    for model in rows:  # dynamics are on by default in studies
        assert (out / "runs" / f"{model}-mnist-seed0" / "dynamics.csv").exists()
    plain = tmp_path / "plain"
    assert main([*argv[:-1], str(plain), "--models", "vgg11_bn", "--no-dynamics"]) == 0
    assert not (plain / "runs" / "vgg11_bn-mnist-seed0" / "dynamics.csv").exists()


def test_a_row_over_seeds_trained_on_different_machines_names_each():
    from cnnbench.report.run_records import RunRecord
    from cnnbench.report.tables import Group

    def run(seed, device):
        return RunRecord(Path(f"r{seed}"), {"seed": seed, "environment": {"device_name": device}}, [], [])

    assert Group("m", "small", "d", [run(1, "CPU A"), run(2, "CPU A")]).devices() == "CPU A"
    mixed = Group("m", "small", "d", [run(1, "CPU A"), run(2, "CPU B"), run(3, "CPU B")]).devices()
    assert mixed == "CPU A (seed 1); CPU B (seeds 2, 3)"


def test_seeds_of_one_row_that_trained_in_different_precisions_say_so():
    """A CPU seed and a GPU seed share a row (the device is no recipe setting), and "auto" may resolve to fp32 on one
    and bf16 on the other: the row names each precision with its seeds instead of showing the first run's."""
    from cnnbench.report.run_records import RunRecord
    from cnnbench.report.tables import Group

    def run(seed, precision):
        return RunRecord(Path(f"r{seed}"), {"seed": seed, "precision": precision}, [], [])

    assert Group("m", "small", "d", [run(1, "bf16"), run(2, "bf16")]).precisions() == "bf16"
    mixed = Group("m", "small", "d", [run(1, "fp32"), run(4, "bf16"), run(5, "bf16")]).precisions()
    assert mixed == "fp32 (seed 1); bf16 (seeds 4, 5)"


CONFIRM_STUDY = Path(__file__).resolve().parents[1] / "studies" / "modern-cifar10-confirm"
CONFIRM_REPORT_BYTES_BEFORE = 10_349_235  # its report.html as committed before figures went in as 256-colour PNGs


@pytest.mark.data
@pytest.mark.slow  # rebuilds a ten-run report (about 30 s)
def test_a_ten_run_study_on_three_machines_reads_honestly_and_weighs_half(tmp_path, capsys):
    """The committed confirm study trained on an AMD CPU, an Intel CPU and an H200: its findings compare no training
    times across them, its figure over time says so, and its report is at most half the size it was."""
    copy = tmp_path / "confirm"
    shutil.copytree(CONFIRM_STUDY, copy)
    assert main(["report", str(copy)]) == 0
    html = (copy / "report.html").read_text()
    assert len(html.encode()) <= CONFIRM_REPORT_BYTES_BEFORE / 2
    assert "Training times of resnet18 and vgg16_bn are not compared" in html and "takes 1.34x" not in html
    assert "Speed is not ranked: these runs trained on 3 different machines" in html and "Fastest" not in html
    assert "the training-time panel marks each curve" in html
    assert 'id="data-cifar10-pairs"' in html and "paired t over 5 seeds" in html  # the deciding test is shown
    assert html.count("<details><summary><b>") == 10  # every run's own section folded away

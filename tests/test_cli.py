import json
import subprocess
import sys
from pathlib import Path

import pytest

from cnnbench.cli import main


def run_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "cnnbench", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


@pytest.mark.data
def test_models_and_datasets_list(capsys):
    assert main(["models", "vgg16*"]) == 0
    assert capsys.readouterr().out.split() == ["vgg16", "vgg16_bn", "vgg16_c", "vgg16_c_bn"]
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "mnist" in out and "found:" in out and "cifar10-jpeg.tar" in out


@pytest.mark.data
@pytest.mark.parametrize(
    "args,message",
    [
        (["train", "--model", "resnet81", "--out", "X"], "Unknown model 'resnet81'. Did you mean 'resnet18'?"),
        (["train", "--dataset", "cifar-10", "--out", "X", "--epochs", "1"], "Unknown data set 'cifar-10'"),
        (["train", "--lr", "-1", "--out", "X"], "lr must be more than 0"),
        (["train", "--epochs", "0", "--out", "X"], "epochs must be at least 1"),
        (["train", "--limit-train", "50", "--batch-size", "128", "--out", "X"], "larger than the training set"),
        (
            ["train", "--dataset", "mnist", "--data-dir", "/nonexistent", "--no-download", "--out", "X"],
            "MNIST was not found",
        ),
        (["evaluate", "nowhere"], "not a cnnbench run folder"),
        (
            ["compare", "--seeds", "0,one", "--out", "X"],
            "--seeds must be comma-separated whole numbers, e.g. 0,1,2 (got '0,one')",
        ),
    ],
)
def test_user_mistakes_exit_2_without_traceback(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)  # in-process (a process per case costs 3 s of imports); the next test runs one
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "X" / "summary.json").exists()


def test_a_user_mistake_in_a_real_process_is_one_paragraph(tmp_path):
    """The same path end to end: the installed entry point, its exit code and its stderr."""
    result = run_cli("train", "--model", "resnet81", "--out", "X", cwd=tmp_path)
    assert result.returncode == 2 and "Did you mean 'resnet18'?" in result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1


def test_only_rank_0_prints_a_user_error(monkeypatch, capsys):
    for rank, printed in (("1", False), ("0", True)):
        monkeypatch.setenv("RANK", rank)
        assert main(["train", "--model", "resnet81", "--out", "X"]) == 2
        assert ("Unknown model 'resnet81'" in capsys.readouterr().err) == printed


def test_config_file_with_unknown_key(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("epochz: 3\n")
    result = run_cli("train", "--config", str(cfg), "--out", str(tmp_path / "r"))
    assert result.returncode == 2 and "unknown keys: 'epochz' (did you mean 'epochs'?)" in result.stderr


@pytest.mark.data
@pytest.mark.slow
def test_train_evaluate_resume_through_the_cli(tmp_path):
    out = tmp_path / "run"
    common = [
        "--model",
        "vgg11_bn",
        "--dataset",
        "mnist",
        "--limit-train",
        "200",
        "--limit-test",
        "100",
        "--batch-size",
        "32",
        "--lr",
        "0.01",
        "--out",
        str(out),
    ]
    result = run_cli("train", *common, "--epochs", "1")
    assert result.returncode == 0, result.stderr
    assert "epoch 1/1" in result.stdout and "done:" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 1
    # a finished run resumed is left as it is
    assert run_cli("train", "--out", str(out), "--resume").returncode == 0
    assert json.loads((out / "summary.json").read_text()) == summary

    result = run_cli("evaluate", str(out))
    assert result.returncode == 0, result.stderr
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["top1"] == pytest.approx(summary["test_top1"], abs=1e-6)
    assert sum(map(sum, evaluation["confusion_matrix"])) == 100
    assert len(evaluation["per_class"]) == 10
    for name in ["confusion_matrix.csv", "per_class.csv", "misclassified.csv", "misclassified.png"]:
        assert (out / name).stat().st_size > 0
    rows = (out / "misclassified.csv").read_text().splitlines()
    assert len(rows) - 1 == evaluation["misclassified"]


def test_models_params(capsys):
    assert main(["models", "resnet18", "--params"]) == 0
    assert capsys.readouterr().out.split()[-3:] == ["resnet18", "11,173,962", "11,181,642"]


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.data
@pytest.mark.parametrize(
    "script,args,message",
    [
        ("scaling.py", ["--models", "vgg99"], "scaling.py: error: Unknown model 'vgg99'"),
        ("dynamics.py", ["--models", "resnet19"], "dynamics.py: error: Unknown model 'resnet19'"),
        ("scaling.py", ["--batch-sizes", "32,big"], "--batch-sizes: '32,big': write comma-separated whole numbers"),
        ("time_to_accuracy.py", ["--study", "nowhere"], "no finished run under nowhere"),
        ("time_to_accuracy.py", ["--study", "x", "--targets", "vgg16=high"], "write [dataset:]model=top1 pairs"),
    ],
)
@pytest.mark.slow
def test_benchmark_scripts_explain_mistakes_without_traceback(tmp_path, script, args, message):
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True, cwd=tmp_path, timeout=600
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("flag", ["--weight-decay", "--lr", "--momentum", "--label-smoothing", "--warmup-fraction"])
def test_non_finite_numbers_are_refused(flag, tmp_path, capsys):
    for value in ("nan", "inf"):
        assert main(["train", "--out", str(tmp_path / "r"), flag, value]) == 2
        err = capsys.readouterr().err
        assert "finite number" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_version(capsys):
    import cnnbench

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"cnnbench {cnnbench.__version__}"


def test_settings_that_train_nothing_are_refused(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "r"), "--batch-size", "1"]) == 2
    err = capsys.readouterr().err
    assert "batch_size must be at least 2" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("command", [["train"], ["compare", "--models", "vgg11_bn", "--datasets", "mnist"]])
def test_out_naming_a_file_is_refused(command, tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("keep me")
    assert main([*command, "--out", str(target), "--limit-train", "64", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "is an existing file" in err and "Traceback" not in err
    assert target.read_text() == "keep me"


def test_the_cli_reference_lists_every_command_and_training_option_with_its_real_default():
    from cnnbench.cli import training_options_markdown
    from cnnbench.cli.reference import cli_reference_markdown
    from cnnbench.config import FIELD_NAMES, INTERNAL_FIELDS

    page = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text(encoding="utf-8")
    assert page == cli_reference_markdown(), "docs/cli.md is stale: run python scripts/cli_reference.py"
    for command in ("train", "compare", "status", "report", "robustness", "insight", "predict", "export", "models"):
        assert f"## cnnbench {command}\n" in page, command
    table = training_options_markdown()
    assert table in page
    for field in FIELD_NAMES:
        if field not in ("model", "dataset", *INTERNAL_FIELDS):
            assert f"`--{field.replace('_', '-')}`" in table, field
    assert "| `--lr` | peak learning rate; more than 0; default 0.1 |" in table

"""A study's tuning phase (--tune): the same search for every model, scored on validation only, resumable."""

import json

import numpy as np
import pytest

import cnnbench.tune.search as search
from cnnbench.cli import main
from cnnbench.config import TrainConfig
from cnnbench.data.loader import prepare
from cnnbench.data.options import DataOptions
from cnnbench.data.sources import RawDataset
from cnnbench.errors import ConfigError
from cnnbench.layout import STUDY_SPEC, SUMMARY, trial_dirs_of
from cnnbench.study import StudySpec, resolve_study, run_study
from cnnbench.tune import TuningSpec, parse_space

from .conftest import CHROMIUM, TINY_MODEL, TINY_MODEL_WIDE, open_in_chromium

BASE = TrainConfig(
    dataset="mnist_demo", epochs=1, limit_train=300, limit_test=100, val_split=100, batch_size=32, precise_bn=0
)
MODELS = (TINY_MODEL, TINY_MODEL_WIDE)
SPACE = "lr=0.005:0.2:log,label_smoothing=0,0.1"


def spec(trials=3, seed=9, seeds=(0,), space=SPACE) -> StudySpec:
    return StudySpec(MODELS, ("mnist_demo",), seeds, BASE, tuning=TuningSpec(parse_space(space), trials, seed))


def test_a_space_parses_ranges_log_ranges_and_choices():
    space = parse_space("lr=0.01:0.3:log, weight_decay=1e-5:1e-3 ,label_smoothing=0,0.1,0.2,epochs=2:4")
    lr, wd, ls, epochs = space.params
    assert (lr.low, lr.high, lr.log) == (0.01, 0.3, True) and (wd.log, wd.choices) == (False, ())
    assert ls.choices == (0.0, 0.1, 0.2) and (epochs.low, epochs.high) == (2, 4)
    assert not space.is_grid and parse_space("lr=0.1,0.2,decay=all,weights").grid_size() == 4
    assert parse_space(space.text()) == space  # what the protocol records reads back as the same space


@pytest.mark.parametrize(
    "text, words",
    [
        ("width=0.5:1", "cannot tune 'width'"),
        ("lrr=0.1:0.2", "did you mean 'lr'"),
        ("lr=0.3:0.01", "from low to high"),
        ("lr=0:0.1:log", "positive low end"),
        ("label_smoothing=0,1.5", "not a valid setting"),
        ("lr=0.1:0.2,lr=0.3,0.4", "more than once"),
        ("0.1,lr=0.1:0.2", "starts with an option name"),
        ("epochs=two:4", "whole number"),
        ("lr=", "needs a range"),
    ],
)
def test_a_bad_space_is_refused_with_what_to_write(text, words):
    with pytest.raises(ConfigError, match=words):
        parse_space(text)


def test_a_trial_never_holds_a_test_image():
    """The validation images stand in for the test split: a test split of poison (all white, all one label) leaves
    no trace in a trial's data, so nothing a trial records or is scored by can come from it."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 200, (200, 1, 8, 8), dtype=np.uint8)
    y = np.repeat(np.arange(4), 50)
    poison_x, poison_y = np.full((60, 1, 8, 8), 255, np.uint8), np.zeros(60, np.int64)
    raw = RawDataset("toy", "toy", list("abcd"), x, y, poison_x, poison_y, natural=False)
    trial = prepare(raw, DataOptions(val_split=40, pad_to=None, trial=True))
    assert trial.test_x.equal(trial.val_x) and trial.test_y.equal(trial.val_y)
    assert not (trial.test_x == 255).all(dim=(1, 2, 3)).any()
    with pytest.raises(ConfigError, match="--val-split"):
        prepare(raw, DataOptions(pad_to=None, trial=True))


def test_every_model_gets_the_same_search_and_is_confirmed_with_its_own_choice(tmp_path):
    out = tmp_path / "study"
    run_study(spec(), out, log=lambda _: None)
    record = json.loads((out / STUDY_SPEC).read_text())
    studies = search.open_studies(out, [("mnist_demo", m) for m in MODELS], create=False)
    trials = {m: studies["mnist_demo", m].get_trials() for m in MODELS}
    assert [len(t) for t in trials.values()] == [3, 3] and all(
        t.state.name == "COMPLETE" for ts in trials.values() for t in ts
    )
    first = [trials[m][0].params for m in MODELS]
    assert first[0] == first[1]  # the same seeded start for both models
    for m in MODELS:
        assert set(trials[m][0].distributions) == {"lr", "label_smoothing"}  # the same space
        chosen = record["tuning"]["chosen"]["mnist_demo"][m]
        best = max(trials[m], key=lambda t: (t.value, -t.number))
        assert chosen["params"] == best.params and chosen["trial"] == best.number
        trial_summary = json.loads(
            (out / "tuning" / f"trial-{best.number}" / "runs" / f"{m}-mnist_demo-seed9" / SUMMARY).read_text()
        )
        assert trial_summary["val_top1"] == chosen["val_top1"] and trial_summary["test_images"] == 100  # validation
        confirm = json.loads((out / "runs" / f"{m}-mnist_demo-seed0" / SUMMARY).read_text())["config"]
        assert confirm["lr"] == best.params["lr"] and confirm["seed"] == 0 and not confirm["trial"]
    assert record["protocol"]["tuning"]["space"] == parse_space(SPACE).text()
    assert record["protocol"]["tuning"]["trials_per_model"] == 3 and record["protocol"]["tuning"]["seed"] == 9
    html = (out / "report.html").read_text()
    assert "How each model was tuned" in html and html.count("(chosen)") == 2 and "Sensitivity to its settings" in html
    assert "Each model tuned first with the same budget: 3 trials" in html  # the protocol, tuning included
    assert len(list((out / "tuning" / "figures").glob("slice-*.png"))) == 2  # Optuna's own plot, per model
    # seeded: another folder asks for the same first settings
    again = tmp_path / "again"
    run_study(spec(trials=1), again, log=lambda _: None)
    assert (
        search.open_studies(again, [("mnist_demo", MODELS[0])], create=False)["mnist_demo", MODELS[0]].trials[0].params
        == first[0]
    )


def test_a_killed_tuning_phase_resumes_without_repeating_finished_trials(tmp_path, monkeypatch):
    out = tmp_path / "study"
    real = search.launch_cells
    calls = []

    def killed_at_the_second_trial(batch):
        calls.append(batch.out.name)
        if batch.out.name == "trial-1" and calls.count("trial-1") == 1:
            raise KeyboardInterrupt
        return real(batch)

    monkeypatch.setattr(search, "launch_cells", killed_at_the_second_trial)
    with pytest.raises(KeyboardInterrupt):
        run_study(spec(trials=2), out, log=lambda _: None)
    first_trial = sorted((trial_dirs_of(out)[0] / "runs").glob("*/summary.json"))
    stamps = [p.stat().st_mtime_ns for p in first_trial]
    asked = search.open_studies(out, [("mnist_demo", MODELS[0])], create=False)["mnist_demo", MODELS[0]].trials
    run_study(spec(trials=2), out, log=lambda _: None)
    assert calls == ["trial-0", "trial-1", "trial-1"]  # trial 0 did not run again
    assert [p.stat().st_mtime_ns for p in first_trial] == stamps
    done = search.open_studies(out, [("mnist_demo", MODELS[0])], create=False)["mnist_demo", MODELS[0]].trials
    assert len(done) == 2 and done[1].params == asked[1].params  # the trial asked before the kill, not a new one


def test_tuning_is_refused_where_it_could_not_be_fair():
    def study(seeds=(0,), space=SPACE, trials=2, seed=5, **flags):
        return resolve_study(
            models=MODELS,
            datasets=["mnist_demo"],
            seeds=seeds,
            flag_options=flags,
            tuning=TuningSpec(parse_space(space), trials, seed),
        )

    with pytest.raises(ConfigError, match="--val-split"):
        study()
    with pytest.raises(ConfigError, match="also a test seed"):
        study(seeds=(0, 1), seed=1, val_split=100)
    with pytest.raises(ConfigError, match="grid of 2 points"):
        study(space="label_smoothing=0,0.1", trials=3, val_split=100)
    assert study(val_split=100).tuning.sampler == "tpe"


def test_the_tuning_declared_with_a_study_cannot_change_afterwards(tmp_path):
    out = tmp_path / "study"
    run_study(spec(trials=1), out, log=lambda _: None)
    with pytest.raises(ConfigError, match="declared with tuning"):
        run_study(spec(trials=2), out, log=lambda _: None)
    with pytest.raises(ConfigError, match="declared with tuning"):
        run_study(StudySpec(MODELS, ("mnist_demo",), (0,), BASE), out, log=lambda _: None)


def test_compare_tune_through_the_command_line(tmp_path, capsys):
    out = tmp_path / "cli"
    common = [
        "compare", "--models", f"{TINY_MODEL},{TINY_MODEL_WIDE}", "--datasets", "mnist_demo", "--epochs", "1",
        "--limit-train", "300", "--limit-test", "100", "--batch-size", "32", "--no-dynamics", "--out", str(out),
    ]  # fmt: skip
    assert main([*common, "--tune", "lr=0.01:0.1:log"]) == 2
    assert "--val-split" in capsys.readouterr().err
    assert main([*common, "--trials", "2"]) == 2
    assert main([*common, "--tune", "lr=0.01:0.1:log", "--trials", "2", "--val-split", "100", "--seeds", "3"]) == 0
    said = capsys.readouterr().out
    assert "4 tuning trial run(s), about" in said  # the time ahead, said before the first trial
    assert "tuning, trial 2 of 2" in said and f"tuned {TINY_MODEL} on mnist_demo" in said
    record = json.loads((out / STUDY_SPEC).read_text())
    assert record["tuning"]["seed"] == 0 and set(record["tuning"]["chosen"]["mnist_demo"]) == set(MODELS)


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
@pytest.mark.parametrize("width", [1280, 390])
def test_the_tuning_section_reads_in_a_browser_on_a_laptop_and_a_phone(tmp_path, width):
    out = tmp_path / "study"
    run_study(spec(trials=2), out, log=lambda _: None)
    seen = open_in_chromium(out / "report.html", width)
    assert seen["errors"] == [] and all(w > 0 for w in seen["image_widths"])
    assert seen["page_width"] <= width and seen["overflowing"] == 0
    assert "How each model was tuned" in seen["text"] and "Sensitivity to its settings" in seen["text"]


def test_a_users_config_file_cannot_make_a_run_a_trial(tmp_path):
    from cnnbench.config import load_config_file

    path = tmp_path / "recipe.yaml"
    path.write_text("trial: true\nval_split: 100\n")
    with pytest.raises(ConfigError, match="cnnbench sets itself"):
        load_config_file(path)
    with pytest.raises(ConfigError, match="cnnbench sets itself"):
        resolve_study(models=MODELS, datasets=["mnist_demo"], file_options={"trial": True, "val_split": 100})

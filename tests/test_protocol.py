"""A protocol declared before training: confirmatory against exploratory verdicts, seeds added after looking,
Holm's correction over several comparisons, and one seed never spoken of as an architecture."""

import json

import pytest

from cnnbench.analysis import protocol as P
from cnnbench.config import TrainConfig
from cnnbench.report.comparison import verdict
from cnnbench.report.significance import Pair, SeedPair, pair_finding
from cnnbench.study import StudySpec, run_study
from tests.conftest import TINY_MODEL, TINY_MODEL_WIDE


def test_holm_against_a_hand_computation():
    # sorted: 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04, raised to 0.06: monotone)
    assert P.holm([0.01, 0.04, 0.03, None, 0.005]) == pytest.approx([0.03, 0.06, 0.06, None, 0.02])
    assert P.holm([0.2]) == [0.2] and P.holm([]) == [] and P.holm([0.6, 0.7]) == [1.0, 1.0]


def test_a_declared_comparison_on_the_declared_seeds_is_confirmatory():
    protocol = P.declare(["vgg16_bn", "resnet18"], [1, 2, 3])
    assert P.status(protocol, "resnet18", "vgg16_bn", [1, 2, 3]) == ("confirmatory", "")
    assert P.status(protocol, "resnet18", "vgg16_bn", [1, 2])[1] == "declared seed 3 not trained yet"
    assert P.status(protocol, "resnet18", "resnet34", [1, 2, 3])[1] == "not a declared comparison"
    assert P.status(None, "resnet18", "vgg16_bn", [1, 2, 3])[0] == "exploratory"


def test_seeds_grown_after_results_make_the_verdict_sequential():
    first = P.updated(None, ["a", "b"], [1, 2], False, results_exist=False)
    assert first.before_results and first.seeds == (1, 2)
    same = P.updated(first, ["a", "b"], [1, 2], False, results_exist=True)
    assert same == first  # rerunning the same study declares nothing new
    grown = P.updated(first, ["a", "b"], [1, 2, 3], False, results_exist=True)
    assert grown.seeds == (1, 2) and grown.seeds_added_after_results == (3,)
    state, why = P.status(grown, "a", "b", [1, 2, 3])
    assert state == "exploratory" and "seed 3 added after results existed" in why
    planned = P.updated(first, ["a", "b"], [1, 2, 3], False, results_exist=False)  # nothing seen yet: no look
    assert planned.seeds_added_after_results == ()
    assert P.status(planned, "a", "b", [1, 2, 3]) == ("confirmatory", "")  # the grid as it stood before results
    assert P.status(planned, "a", "b", [1, 2])[1] == "declared seed 3 not trained yet"
    old = P.updated(None, ["a", "b"], [1], False, results_exist=True)  # a study from before protocols
    assert P.status(old, "a", "b", [1]) == ("exploratory", "the protocol was recorded after results existed")


def test_a_grid_changed_before_any_result_is_the_declaration():
    """A first command that failed before anything trained (seeds [0], models a, b) does not fix the protocol: the
    next command's grid (seeds 0, 1; models a, c) is what the verdicts are held to."""
    failed_first = P.updated(None, ["a", "b"], [0], False, results_exist=False)
    then = P.updated(failed_first, ["a", "c"], [0, 1], False, results_exist=False)
    assert then.declared_seeds == (0, 1) and then.comparisons == (("a", "c"),)
    assert P.status(then, "a", "c", [0, 1]) == ("confirmatory", "")
    assert P.status(then, "a", "b", [0, 1])[1] == "not a declared comparison"
    later = P.updated(then, ["a", "c"], [0, 1, 2], False, results_exist=True)  # after results: a look
    assert later.declared_seeds == (0, 1) and later.seeds_added_after_results == (2,)


def _pair(n_seeds, diff=0.01, status=("confirmatory", "")):
    seeds = [SeedPair(s, 0.9 + diff, 0.9, diff, (diff / 2, diff * 1.5), 40, 10, 1e-5) for s in range(n_seeds)]
    return Pair("cifar10", "resnet18", "vgg16_bn", seeds, ([], []), "resnet18", "vgg16_bn", 1e-5, *status)


def test_one_seed_is_one_trained_network_not_the_architecture():
    pair = _pair(1)
    text = " ".join(pair_finding(pair))
    assert "one trained network, not the architecture" in text and "Confirmatory" in text
    assert "resnet18 is more accurate than vgg16_bn" not in text  # no architecture-level claim from one seed
    assert "one trained network" in verdict(pair) and verdict(pair).endswith("confirmatory")
    several = _pair(3, status=("exploratory", "seed 3 added after results existed (sequential testing)"))
    assert " ".join(pair_finding(several)).startswith("Exploratory (seed 3 added after results existed")
    assert verdict(several) == "resnet18 more accurate; exploratory"


@pytest.mark.data
@pytest.mark.slow  # two studies and their reports
def test_the_report_labels_confirmatory_and_exploratory_verdicts(tmp_path):
    base = TrainConfig(epochs=1, limit_train=200, limit_test=100, batch_size=32, lr=0.05, precise_bn=0)
    out = tmp_path / "study"
    said = []
    run_study(StudySpec((TINY_MODEL, TINY_MODEL_WIDE), ("mnist_demo",), (0, 1), base), out, log=said.append)
    assert any(line.startswith("4 run(s) to train: about") for line in said)  # an estimate before starting
    assert any("3 run(s) to go: about" in line for line in said)  # a time to finish, as it goes
    study = json.loads((out / "study.json").read_text())
    assert study["protocol"]["seeds"] == [0, 1] and study["protocol"]["before_results"] is True
    pairs = (out / "pairs.csv").read_text()
    assert "p_adjusted" in pairs.splitlines()[0] and ",confirmatory," in pairs
    report = (out / "report.html").read_text()
    assert "Protocol declared" in report and "Confirmatory" in report
    run_study(StudySpec((TINY_MODEL, TINY_MODEL_WIDE), ("mnist_demo",), (0, 1, 2), base), out, log=lambda _: None)
    study = json.loads((out / "study.json").read_text())
    assert study["protocol"]["seeds"] == [0, 1]  # the first declaration stands
    assert study["protocol"]["seed_history"][-1]["seeds"] == [0, 1, 2]
    report = (out / "report.html").read_text()
    assert "Exploratory (seed 2 added after results existed" in report


def test_a_protocol_written_after_runs_began_is_exploratory_whatever_its_fields_say(tmp_path):
    """A hand-written protocol that claims to come first, dated after the runs it judges, is caught from the run
    folders' own start times; so is one that cannot be placed in time."""
    from cnnbench.report.html import build_report

    base = TrainConfig(epochs=1, limit_train=200, limit_test=100, batch_size=32, lr=0.05, precise_bn=0)
    out = tmp_path / "study"
    run_study(StudySpec((TINY_MODEL, TINY_MODEL_WIDE), ("mnist_demo",), (0, 1), base), out, log=lambda _: None)
    study = json.loads((out / "study.json").read_text())
    assert ",confirmatory," in (out / "pairs.csv").read_text()  # declared by the study before it trained
    study["protocol"].update(declared_at="2099-01-01T00:00:00+00:00", before_results=True)  # written "later"
    (out / "study.json").write_text(json.dumps(study))
    build_report(out)
    pairs = (out / "pairs.csv").read_text()
    assert ",confirmatory," not in pairs and "run(s) began before the protocol was declared" in pairs
    assert "began before the protocol was declared" in (out / "report.html").read_text()
    study["protocol"]["declared_at"] = ""
    (out / "study.json").write_text(json.dumps(study))
    build_report(out)
    assert "no readable declaration time" in (out / "pairs.csv").read_text()


@pytest.mark.parametrize(
    "change, words",
    [
        ({"seeds": ["1", 2]}, "seeds must be a list of whole numbers"),
        ({"alpha": 5}, "alpha must be a number between 0 and 1"),
        ({"comparisons": [["a"]]}, "comparisons must be a list"),
        ({"before_results": "yes"}, "before_results must be a bool"),
    ],
)
def test_a_malformed_hand_written_protocol_is_refused_with_its_fault(change, words):
    from cnnbench.errors import ConfigError

    good = P.declare(["a", "b"], [1, 2]).to_dict()
    assert P.Protocol.from_dict(good) == P.declare(["a", "b"], [1, 2]).__class__.from_dict(good)
    with pytest.raises(ConfigError, match=words):
        P.Protocol.from_dict({**good, **change})

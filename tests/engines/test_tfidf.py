from __future__ import annotations

import numpy as np
import pytest

from issuelab.config import load_config
from issuelab.data import Issue, Label
from issuelab.engines import Task
from issuelab.engines.registry import create_engine
from issuelab.engines.tfidf import TfidfEngine, TfidfOptions
from issuelab.labeler import Labeler
from issuelab.train import fit_labeler

from ..helpers import make_issues

TOY_TASK = Task(tuple(Label(name, "") for name in ["bug", "enhancement", "documentation", "ci/cd"]), multi_label=True)


def test_learns_a_multilabel_task(toy_config):
    config = load_config(toy_config)
    train, eval, test = make_issues(300, seed=1), make_issues(60, seed=2), make_issues(100, seed=3)
    labeler, eval_metrics = fit_labeler(config, train, eval)
    assert labeler.multi_label
    assert eval_metrics.f1 > 0.85
    predictions = labeler.predict(test)
    hits = sum(set(p.labels) == set(i.labels) for p, i in zip(predictions, test))
    assert hits / len(test) > 0.7
    assert all(1 <= len(p.labels) <= 3 for p in predictions)
    assert all(set(p.scores) == set(config.label_names) for p in predictions)
    assert all(0.0 <= s <= 1.0 for p in predictions for s in p.scores.values())


def test_single_label_data_predicts_exactly_one_label(toy_config):
    config = load_config(toy_config)
    labeler, metrics = fit_labeler(config, make_issues(200, multi_label=False), make_issues(40, seed=5, multi_label=False))
    assert not labeler.multi_label
    assert metrics.labels_per_example == 1.0 and metrics.f1 > 0.85


def test_save_load_gives_the_same_scores_without_pickle(toy_config, tmp_path):
    config = load_config(toy_config)
    labeler, _ = fit_labeler(config, make_issues(200), make_issues(40, seed=4))
    labeler.save(tmp_path / "run")
    loaded = Labeler.load(tmp_path / "run")
    test = make_issues(50, seed=9)
    np.testing.assert_array_equal(labeler.engine.predict_scores(test), loaded.engine.predict_scores(test))
    assert [p.labels for p in labeler.predict(test)] == [p.labels for p in loaded.predict(test)]
    files = sorted(p.name for p in (tmp_path / "run").rglob("*") if p.is_file())
    assert files == sorted(["labels.json", "manifest.json", "options.json", "prompt.txt", "thresholds.json", "vocabulary.json", "weights.npz"])
    with np.load(tmp_path / "run" / "model" / "weights.npz", allow_pickle=False) as weights:
        assert all(weights[k].dtype != object for k in weights.files)


def test_label_with_no_positives_gets_a_low_score():
    engine = TfidfEngine(TfidfOptions(min_df=1, label_documents=False))
    train = [i for i in make_issues(100) if "ci/cd" not in i.labels]
    engine.fit(train, None, TOY_TASK)
    scores = engine.predict_scores(make_issues(20, seed=1))
    assert (scores[:, 3] < 0.01).all()
    assert scores[:, :3].max() > 0.5


def test_label_description_makes_an_unseen_label_predictable():
    task = Task(
        (Label("bug", "Something crashes"), Label("enhancement", "A new feature"), Label("documentation", "Docs"),
         Label("ci/cd", "Continuous integration pipeline and deployment workflow runner")),
        multi_label=True,
    )
    train = [i for i in make_issues(100) if "ci/cd" not in i.labels]
    about_ci = [Issue(1, "pipeline workflow fails", "the deployment runner of continuous integration"), Issue(2, "runner pipeline", "")]
    other = [Issue(3, "widget crash", "it crashes on linux"), Issue(4, "add a feature", "please add a widget")]
    with_docs, without = TfidfEngine(TfidfOptions(min_df=1)), TfidfEngine(TfidfOptions(min_df=1, label_documents=False))
    with_docs.fit(train, None, task)
    without.fit(train, None, task)
    scores = with_docs.predict_scores(about_ci + other)[:, 3]
    assert scores[:2].min() > 2 * scores[2:].max()
    assert scores[:2].min() > 3 * without.predict_scores(about_ci)[:, 3].max()


def test_empty_and_unseen_text_still_scores():
    engine = TfidfEngine()
    engine.fit(make_issues(100), None, TOY_TASK)
    scores = engine.predict_scores([Issue(1, "", None), Issue(2, "zzzz qqqq", "")])
    assert scores.shape == (2, 4) and np.isfinite(scores).all()


def test_every_run_records_how_its_thresholds_were_set(toy_config):
    config = load_config(toy_config)
    eval = make_issues(60, seed=2)
    for issue in eval:  # ci/cd on exactly two eval issues: too few to tune its threshold
        issue.labels = [label for label in issue.labels if label != "ci/cd"] or ["bug"]
    eval[0].labels, eval[1].labels = ["ci/cd"], ["ci/cd"]
    train = [i for i in make_issues(300, seed=1) if "ci/cd" not in i.labels]
    config.train.calibration = "eval"
    labeler, _ = fit_labeler(config, make_issues(300, seed=1), eval)
    calibration = labeler.manifest["calibration"]
    assert calibration["source"] == "eval split" and calibration["fallback"] == ["ci/cd"]
    # chosen as out of fold, on the eval split's scores: too few positives take the global threshold
    assert calibration["labels"]["ci/cd"] == {"threshold": calibration["global_threshold"], "method": "global", "positives": 2}
    assert calibration["labels"]["bug"]["method"] == "shrunk"
    assert calibration["labels"]["bug"]["threshold"] == pytest.approx(labeler.thresholds["bug"], abs=1e-5)
    assert 0.0 <= calibration["ece"] < 0.5 and calibration["issues"] == 60

    config.train.calibration = "auto"  # tfidf refits in a second: thresholds out of fold over train + eval
    labeler, metrics = fit_labeler(config, train, eval)
    calibration = labeler.manifest["calibration"]
    assert calibration["source"] == "out-of-fold (5 folds)" and calibration["issues"] == len(train) + 60 == metrics.examples
    assert calibration["fallback"] == ["ci/cd"]  # two positives in all the data: the global threshold
    assert calibration["labels"]["ci/cd"] == {"threshold": calibration["global_threshold"], "method": "global", "positives": 2}
    assert calibration["labels"]["bug"]["method"] == "shrunk" and metrics.name == "out-of-fold"
    single, _ = fit_labeler(config, make_issues(200, multi_label=False), make_issues(40, seed=5, multi_label=False))
    assert {v["method"] for v in single.manifest["calibration"]["labels"].values()} == {"argmax"}


def test_options_are_validated():
    with pytest.raises(Exception, match="word_ngrams"):
        create_engine("tfidf", {"word_ngrams": [3, 1]})
    with pytest.raises(Exception, match="unknown engine 'nope'"):
        create_engine("nope")

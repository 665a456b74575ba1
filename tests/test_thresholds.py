"""Thresholds chosen out of fold: one global threshold under the policy's rule, per-label ones shrunk
toward it by how many positives a label has, never anything learned from the issues being scored."""

from __future__ import annotations

import numpy as np
import pytest

from issuelab.config import load_config
from issuelab.crossval import crossval_folds
from issuelab.policy import label_matrix
from issuelab.thresholds import SHRINK_STRENGTH, THRESHOLD_GRID, held_out_thresholds

from .helpers import make_issues


def test_a_rare_label_takes_the_global_threshold_and_others_are_shrunk_toward_it():
    rng = np.random.default_rng(0)
    gold = np.zeros((200, 3), dtype=bool)
    gold[:100, 0] = True  # common
    gold[100:, 1] = True  # common, separable only at a high cut
    gold[[3, 7], 2] = True  # two positives: too few to tune
    scores = np.where(gold, rng.uniform(0.55, 1.0, gold.shape), rng.uniform(0.0, 0.5, gold.shape))
    scores[:, 1] = np.where(gold[:, 1], rng.uniform(0.85, 1.0, 200), rng.uniform(0.0, 0.8, 200))
    thresholds, report = held_out_thresholds(scores, gold, ["a", "b", "rare"], min_labels=1, max_labels=0)
    glob = report["global_threshold"]
    assert glob in THRESHOLD_GRID and report["methods"] == {"a": "shrunk", "b": "shrunk", "rare": "global"}
    assert thresholds["rare"] == glob and report["positives"]["rare"] == 2
    own_b = 0.82  # the first grid point above every negative of b
    assert glob < thresholds["b"] < own_b  # 100 positives: its own threshold, pulled toward the global one
    expected = (100 * thresholds_own(scores[:, 1], gold[:, 1], glob) + SHRINK_STRENGTH * glob) / (100 + SHRINK_STRENGTH)
    assert thresholds["b"] == pytest.approx(expected, abs=1e-5)


def thresholds_own(column, positives, glob):
    def f1(t):
        predicted = column >= t
        return 2 * (predicted & positives).sum() / (predicted.sum() + positives.sum())

    return max(THRESHOLD_GRID, key=lambda t: (f1(t), -abs(t - glob)))


def test_a_label_with_dozens_of_positives_stays_nearer_the_global_threshold_than_its_own():
    # Per-label F1 maxima overfit out-of-fold scores: at the 'full' size (labels with tens to hundreds of
    # positives) thresholds near their own maxima scored 0.01-0.03 micro F1 below one global threshold.
    rng = np.random.default_rng(1)
    gold = np.zeros((300, 2), dtype=bool)
    gold[:150, 0] = True
    gold[150:190, 1] = True  # 40 positives, separable only at a high cut
    scores = np.where(gold, rng.uniform(0.55, 1.0, gold.shape), rng.uniform(0.0, 0.5, gold.shape))
    scores[:, 1] = np.where(gold[:, 1], rng.uniform(0.9, 1.0, 300), rng.uniform(0.0, 0.88, 300))
    thresholds, report = held_out_thresholds(scores, gold, ["a", "b"], min_labels=1, max_labels=0)
    glob, own = report["global_threshold"], thresholds_own(scores[:, 1], gold[:, 1], report["global_threshold"])
    assert own - glob > 0.2  # the labels disagree, so where b's threshold lands says how far it was pulled
    assert glob < thresholds["b"] < (glob + own) / 2


def test_the_global_threshold_is_chosen_under_the_rule_that_applies_it():
    # the first issue's positive scores 0.3, below the second issue's negative at 0.35
    scores = np.array([[0.3, 0.1], [0.9, 0.35], [0.1, 0.95]])
    gold = np.array([[1, 0], [1, 0], [0, 1]], dtype=bool)
    _, forced = held_out_thresholds(scores, gold, ["a", "b"], min_labels=1, max_labels=0)
    _, free = held_out_thresholds(scores, gold, ["a", "b"], min_labels=0, max_labels=0)
    # without the rule a low cut is best (one false positive); with one label forced per issue a cut
    # above 0.35 is perfect, and that is what the rule's threshold must be
    assert free["global_threshold"] <= 0.3 and free["micro_f1_global"] < 1
    assert 0.35 < forced["global_threshold"] <= 0.9 and forced["micro_f1_global"] == 1
    assert label_matrix(scores, forced["global_threshold"], True, 1, 0).tolist() == gold.tolist()


def test_thresholds_never_see_the_test_fold(toy_config):
    config = load_config(toy_config)
    issues = make_issues(90, seed=3)
    first = list(crossval_folds(config, issues, "tfidf", folds=3, progress=False))
    held_out = first[0].test_index
    changed = list(issues)
    for i in held_out:  # the first fold's test issues get other words (same labels, so the same folds)
        changed[i] = issues[i].__class__(issues[i].id, "zebra quartz", "mango violin", list(issues[i].labels))
    second = list(crossval_folds(config, changed, "tfidf", folds=3, progress=False))
    assert [fold.test_index for fold in second] == [fold.test_index for fold in first]
    probe = make_issues(20, seed=11)
    assert second[0].labeler.thresholds == first[0].labeler.thresholds
    np.testing.assert_array_equal(second[0].labeler.engine.predict_scores(probe), first[0].labeler.engine.predict_scores(probe))
    assert second[0].labeler.manifest["calibration"]["issues"] == len(issues) - len(held_out)
    # the other folds trained (and calibrated) on the changed issues
    assert not np.array_equal(second[1].labeler.engine.predict_scores(probe), first[1].labeler.engine.predict_scores(probe))


def test_a_precision_target_takes_the_lowest_threshold_that_reaches_it_and_names_the_labels_that_cannot():
    from issuelab.thresholds import NEVER, precision_thresholds

    rng = np.random.default_rng(0)
    gold = np.zeros((200, 2), dtype=bool)
    gold[:80, 0] = gold[::3, 1] = True
    separable = np.where(gold[:, 0], rng.uniform(0.5, 1.0, 200), rng.uniform(0.0, 0.7, 200))  # overlap in [0.5, 0.7]
    noise = rng.uniform(0, 1, 200)  # a third of issues carry it, whatever the score
    thresholds, unreachable = precision_thresholds(np.stack([separable, noise], axis=1), gold, ["a", "b"], 0.9)
    assert unreachable == ["b"] and thresholds["b"] == NEVER
    chosen = separable >= thresholds["a"]
    assert (chosen & gold[:, 0]).sum() / chosen.sum() >= 0.9
    lower = separable >= thresholds["a"] - 0.02  # the grid's step below: short of the target
    assert (lower & gold[:, 0]).sum() / lower.sum() < 0.9


def test_a_run_with_a_precision_target_is_more_precise_on_held_out_issues_and_records_how(toy_config):
    import dataclasses

    from issuelab.thresholds import NEVER
    from issuelab.train import fit_labeler

    config = load_config(toy_config)
    train, test = make_issues(160, seed=21), make_issues(200, seed=22)
    for issue in train[::4]:  # noisy labels: an F1 threshold then labels more than a 0.95-precision one
        issue.labels = ["enhancement"]

    def precision(labeler):
        predicted = [p.labels for p in labeler.predict(test)]
        added = sum(map(len, predicted))
        return sum(len(set(labels) & set(issue.labels)) for labels, issue in zip(predicted, test)) / max(1, added), added

    plain, _ = fit_labeler(config, train, None, "tfidf")
    strict, _ = fit_labeler(dataclasses.replace(config, policy=dataclasses.replace(config.policy, target_precision=0.95)), train, None, "tfidf")
    report = strict.manifest["calibration"]["target_precision"]
    assert report["target"] == 0.95 and report["f1_thresholds"] == plain.thresholds and strict.policy.min_labels == 0
    assert all(strict.thresholds[label] == NEVER for label in report["unreachable"])
    assert all(strict.manifest["calibration"]["labels"][label]["method"] in ("precision", "never") for label in strict.label_names)
    (p_plain, n_plain), (p_strict, n_strict) = precision(plain), precision(strict)
    assert p_strict > p_plain and n_strict < n_plain


def test_a_precision_target_leaves_no_label_reported_at_the_global_threshold():
    from issuelab.data import Issue
    from issuelab.train import _for_precision

    issues = [Issue(i, "t", "b", [label]) for i, label in enumerate(["a", "a", "a", "b", "b", "b"])]
    scores = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.2, 0.9], [0.1, 0.8], [0.3, 0.7]])
    calibration = {"labels": {"a": {"method": "shrunk"}, "b": {"method": "global"}}, "fallback": ["b"], "global_threshold": 0.5}
    thresholds, report = _for_precision(None, 0.9, {"a": 0.5, "b": 0.5}, calibration, scores, issues, ["a", "b"])
    assert report["fallback"] == [] and {entry["method"] for entry in report["labels"].values()} == {"precision"}
    assert report["target_precision"]["f1_thresholds"] == {"a": 0.5, "b": 0.5} and thresholds["b"] <= 0.7

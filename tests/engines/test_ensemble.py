"""The ensemble weights its members equally unless their out-of-fold scores clearly say otherwise: a useless
member is left out, and the mix is never more than WEIGHTING_MARGIN below its best member out of fold."""

from __future__ import annotations

import json

import numpy as np

from issuelab.data import Label
from issuelab.engines import BaseEngine, Task
from issuelab.engines.ensemble import WEIGHTING_MARGIN, EnsembleEngine, EnsembleOptions
from issuelab.engines.tfidf import TfidfEngine, TfidfOptions

from ..helpers import make_issues

TASK = Task(tuple(Label(name, "") for name in ["bug", "enhancement", "documentation", "ci/cd"]), multi_label=True)


def members(*options):
    """A member factory handing out engines with these options (or these engines), in order."""
    queue = [o if isinstance(o, NoiseEngine) else TfidfEngine(o) for o in options]
    return lambda name: queue.pop(0)


class NoiseEngine(BaseEngine):
    """Random scores: a member that knows nothing."""

    options = None
    info: dict = {}

    def fresh(self):
        return NoiseEngine()

    def fit(self, train, eval, task, seed=0):
        self.labels, self.rng = len(task.labels), np.random.default_rng(seed)

    def predict_scores(self, issues):
        return self.rng.random((len(issues), self.labels))


def test_a_useless_member_is_left_out_and_the_best_one_answers_alone(tmp_path):
    train, test = make_issues(150, seed=1), make_issues(40, seed=2)
    good = TfidfOptions()
    ensemble = EnsembleEngine(EnsembleOptions(engines=("tfidf", "tfidf")), make_member=members(good, NoiseEngine()))
    scores = ensemble.fit_out_of_fold(train, TASK, seed=0, folds=5)
    assert scores.shape == (150, 4)
    assert ensemble.weights == (1.0, 0.0) and ensemble.info["weighting"].startswith("tfidf alone: it beat every mix")
    f1 = ensemble.info["out_of_fold_micro_f1"]
    assert f1["tfidf"] > f1["tfidf-2"] and f1["mix"] == f1["tfidf"]
    alone = TfidfEngine(good)
    alone.fit(train, None, TASK, 0)
    np.testing.assert_allclose(ensemble.predict_scores(test), alone.predict_scores(test))
    ensemble.save(tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["ensemble.json", "tfidf"]  # the unused member is not kept
    loaded = EnsembleEngine.load(tmp_path / "model")
    np.testing.assert_allclose(loaded.predict_scores(test), alone.predict_scores(test))
    assert json.loads((tmp_path / "model/ensemble.json").read_text())["weights"] == [1.0, 0.0]


def test_two_members_of_similar_quality_are_weighted_equally_and_the_mix_stays_near_the_best():
    words, chars = TfidfOptions(char_ngrams=(5, 5), min_df=1), TfidfOptions(word_ngrams=(2, 2), min_df=1, C=1.0)
    ensemble = EnsembleEngine(EnsembleOptions(engines=("tfidf", "tfidf")), make_member=members(words, chars))
    ensemble.fit_out_of_fold(make_issues(150, seed=4), TASK, seed=0, folds=5)
    f1 = ensemble.info["out_of_fold_micro_f1"]
    assert f1["mix"] >= max(f1["tfidf"], f1["tfidf-2"]) - WEIGHTING_MARGIN and abs(sum(ensemble.weights) - 1) < 1e-9
    assert ensemble.weights == (0.5, 0.5) and ensemble.info["weighting"].startswith("equal weights")


def test_given_weights_are_kept(tmp_path):
    ensemble = EnsembleEngine(EnsembleOptions(engines=("tfidf", "tfidf"), weights=(0.8, 0.2)), make_member=members(TfidfOptions(), TfidfOptions(C=1.0)))
    ensemble.fit_out_of_fold(make_issues(60, seed=5), TASK, seed=0, folds=3)
    assert ensemble.weights == (0.8, 0.2) and ensemble.info["weighting"] == "weights given"


def test_the_evidence_of_each_used_member_is_named_by_member():
    from issuelab.data import Issue

    ensemble = EnsembleEngine(EnsembleOptions(engines=("tfidf", "tfidf"), weights=(0.5, 0.5)), make_member=members(TfidfOptions(), TfidfOptions(C=1.0)))
    ensemble.fit_out_of_fold(make_issues(80, seed=6), TASK, seed=0, folds=3)
    evidence = ensemble.explain(Issue(1, "crash with traceback", "it fails"), ["bug"], TASK.label_names)["bug"]
    assert [line.split(": ")[0] for line in evidence] == ["tfidf", "tfidf-2"] and all("terms: " in line for line in evidence)


def test_members_score_a_long_list_a_chunk_at_a_time_with_the_same_result(monkeypatch):
    from issuelab.engines import ensemble as ensemble_module

    ensemble = EnsembleEngine(EnsembleOptions(engines=("tfidf", "tfidf"), weights=(0.5, 0.5)), make_member=members(TfidfOptions(), TfidfOptions(C=1.0)))
    ensemble.fit_out_of_fold(make_issues(80, seed=6), TASK, seed=0, folds=3)
    test = make_issues(23, seed=7)
    whole = ensemble.predict_scores(test)
    calls = []
    for member in ensemble.members:
        monkeypatch.setattr(member, "predict_scores", lambda issues, score=member.predict_scores: calls.append(len(issues)) or score(issues))
    monkeypatch.setattr(ensemble_module, "PREDICT_CHUNK", 5)
    np.testing.assert_allclose(ensemble.predict_scores(test), whole)
    assert calls == [5, 5, 5, 5, 5, 5, 5, 5, 3, 3]  # each chunk of 5 issues through both members, then the last 3


class LeakyEngine(NoiseEngine):
    """Out-of-fold scores from a model that saw every fold's labels (as `fewshot`'s adapted encoder does):
    perfect there, noise on issues it did not see."""

    def fresh(self):
        return LeakyEngine()

    def fit_out_of_fold(self, train, task, seed, folds):
        self.fit(train, None, task, seed)
        self.optimistic_out_of_fold = True
        return 0.2 + 0.6 * np.array([[label.name in issue.labels for label in task.labels] for issue in train], dtype=float)


def test_optimistic_out_of_fold_scores_never_weight_a_member_up_but_still_weight_it_down():
    train = make_issues(150, seed=1)
    fooled = EnsembleEngine(EnsembleOptions(engines=("tfidf", "tfidf")), make_member=members(NoiseEngine(), LeakyEngine()))
    fooled.fit_out_of_fold(train, TASK, seed=0, folds=5)
    f1 = fooled.info["out_of_fold_micro_f1"]
    assert f1["tfidf-2"] == 1.0 > f1["equal"] + WEIGHTING_MARGIN  # without the rule, the leaky member would answer alone
    assert fooled.weights == (0.5, 0.5) and "tfidf-2 (optimistic out-of-fold scores)" in fooled.info["weighting"]

    class OptimisticNoise(NoiseEngine):
        optimistic_out_of_fold = True

    useless = EnsembleEngine(EnsembleOptions(engines=("tfidf", "tfidf")), make_member=members(TfidfOptions(), OptimisticNoise()))
    useless.fit_out_of_fold(train, TASK, seed=0, folds=5)
    assert useless.weights == (1.0, 0.0)  # worse even on optimistic scores: weighted down as any member

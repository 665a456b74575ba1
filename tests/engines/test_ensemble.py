"""The ensemble weights its members on their out-of-fold scores and is never worse than its best member."""

from __future__ import annotations

import json

import numpy as np

from issuelab.data import Label
from issuelab.engines import Task
from issuelab.engines.ensemble import EnsembleEngine, EnsembleOptions
from issuelab.engines.tfidf import TfidfEngine, TfidfOptions

from ..helpers import make_issues

TASK = Task(tuple(Label(name, "") for name in ["bug", "enhancement", "documentation", "ci/cd"]), multi_label=True)


def members(*options):
    """A member factory handing out engines with these options, in order."""
    queue = [TfidfEngine(o) for o in options]
    return lambda name: queue.pop(0)


def test_a_useless_member_is_left_out_and_the_best_one_answers_alone(tmp_path):
    good, useless = TfidfOptions(), TfidfOptions(C=1e-6, label_documents=False)  # near-constant scores
    train, test = make_issues(150, seed=1), make_issues(40, seed=2)
    ensemble = EnsembleEngine(EnsembleOptions(engines=("tfidf", "tfidf")), make_member=members(good, useless))
    scores = ensemble.fit_out_of_fold(train, TASK, seed=0, folds=5)
    assert scores.shape == (150, 4)
    assert ensemble.weights == (1.0, 0.0) and ensemble.info["weighting"].startswith("tfidf alone: no mix beat it")
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


def test_the_mix_is_never_worse_out_of_fold_than_its_best_member():
    words, chars = TfidfOptions(char_ngrams=(5, 5), min_df=1), TfidfOptions(word_ngrams=(2, 2), min_df=1, C=1.0)
    ensemble = EnsembleEngine(EnsembleOptions(engines=("tfidf", "tfidf")), make_member=members(words, chars))
    ensemble.fit_out_of_fold(make_issues(150, seed=4), TASK, seed=0, folds=5)
    f1 = ensemble.info["out_of_fold_micro_f1"]
    assert f1["mix"] >= max(f1["tfidf"], f1["tfidf-2"]) and abs(sum(ensemble.weights) - 1) < 1e-9

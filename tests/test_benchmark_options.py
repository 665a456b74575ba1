"""How the benchmark scripts read a system's options (no data needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from issuelab.config import Config, Label

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def multilabel(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import multilabel

    return multilabel


def test_a_system_keeps_list_values_whole_and_names_its_set(multilabel):
    config = Config(labels=[Label("bug", "broken"), Label("docs", "documentation")])
    spec = 'ensemble:ensemble.engines=["tfidf","fewshot"],fewshot.model=encoders/{set},policy.max_labels=2'

    engine, configured = multilabel.parse_system(spec, config, "mrtk")

    assert engine == "ensemble"
    assert configured.train.engine_options == {"ensemble": {"engines": ["tfidf", "fewshot"]}, "fewshot": {"model": "encoders/mrtk"}}
    assert configured.policy.max_labels == 2


def test_a_system_with_an_unknown_policy_key_is_refused(multilabel):
    config = Config(labels=[Label("bug", "broken"), Label("docs", "documentation")])
    with pytest.raises(SystemExit, match="no key 'max_label'"):
        multilabel.parse_system("tfidf:policy.max_label=2", config, "sklearn")


def test_an_ensemble_member_keeps_list_values_whole(multilabel):
    import nlbse24_ensemble

    name, engine, settings, seeds = nlbse24_ensemble.parse_member('mix=ensemble:engines=["tfidf","embed"],seeds=2')

    assert (name, engine, settings, seeds) == ("mix", "ensemble", {"engines": ["tfidf", "embed"]}, range(2))


def test_one_seed_of_a_member_trains_alone_where_its_seeds_are_cached(multilabel, monkeypatch, tmp_path):
    import nlbse24_ensemble

    name, engine, settings, seeds = nlbse24_ensemble.parse_member("mp=embed:finetune=yes,seed=2")
    assert (settings, seeds) == ({"finetune": "yes"}, range(2, 3))
    trained = []

    def seed_scores(key, engine, options, seed, *rest):
        trained.append((key, seed))
        return np.full((3, 2), seed + 1.0), dict.fromkeys(nlbse24_ensemble.COSTS, 1.0) | {"shared": [], "cached": False}

    monkeypatch.setattr(nlbse24_ensemble, "seed_scores", seed_scores)
    scores, _ = nlbse24_ensemble.member_scores(name, engine, settings, seeds, "o/r", tmp_path, None, tmp_path)
    nlbse24_ensemble.member_scores(name, engine, settings, range(3), "o/r", tmp_path, None, tmp_path)
    assert trained[0] == ("mp-seed2", 2)  # the key `seeds=3` reads for its third seed
    assert trained[1:] == [("mp", 0), ("mp-seed1", 1), ("mp-seed2", 2)]
    assert np.allclose(scores, 0.5)  # one seed's rows, normalised, not divided by a count of seeds it did not train
    for bad in ("mp=embed:seed=1,seeds=2", "mp=embed:seed=-1"):
        with pytest.raises(SystemExit, match="seed must be a whole number >= 0, and not given with seeds"):
            nlbse24_ensemble.parse_member(bad)


def _set_result(f1: dict[str, float], cpu: dict[str, float]) -> dict:
    """One set's summary as multilabel.py writes it: systems with costs, references without."""
    rows = {system: {"micro_f1": f1[system], "train_cpu_seconds": cpu[system], "p50_ms": 5.0, "run_mb": 1.0} for system in f1}
    return rows | {reference: {"micro_f1": 0.5, "train_cpu_seconds": 1.0, "p50_ms": None, "run_mb": None} for reference in ("reference: tf-idf", "reference: tf-idf + MiniLM")}


def test_the_frontier_keeps_the_systems_no_cheaper_one_matches(multilabel):
    results = {"sklearn": _set_result({"cheap": 0.70, "dear": 0.80, "dearer but worse": 0.75}, {"cheap": 2, "dear": 20, "dearer but worse": 40}),
               "mrtk": _set_result({"cheap": 0.60, "dear": 0.62, "dearer but worse": 0.61}, {"cheap": 4, "dear": 30, "dearer but worse": 60})}

    rows = {r["system"]: r for r in multilabel.frontier_rows(results)}

    assert set(rows) == {"cheap", "dear", "dearer but worse"}  # the references are no systems
    assert rows["dear"]["micro_f1"] == pytest.approx(0.71) and rows["dear"]["train_cpu_seconds"] == pytest.approx(25)
    assert [name for name, r in rows.items() if r["frontier"]] == ["cheap", "dear"]


def test_reports_of_different_commands_or_the_same_set_are_not_merged(multilabel, tmp_path):
    def report(name, sets, engines=("tfidf",)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"protocol": "small", "engines": list(engines), "options": {}, "results": {s: {} for s in sets}}))
        return str(path)

    merged = multilabel.merge_reports([report("a", ["sklearn"]), report("b", ["mrtk", "hf-datasets"])])
    assert list(merged["results"]) == ["sklearn", "mrtk", "hf-datasets"]
    with pytest.raises(SystemExit, match="another protocol, systems or options"):
        multilabel.merge_reports([report("c", ["sklearn"]), report("d", ["mrtk"], engines=("tfidf", "fewshot"))])
    with pytest.raises(SystemExit, match="a set measured in two of the runs"):
        multilabel.merge_reports([report("e", ["sklearn"]), report("f", ["sklearn"])])
    with pytest.raises(SystemExit, match=r"h\.json: a set measured in two of the runs \(mrtk\)"):  # any two runs, not only the first
        multilabel.merge_reports([report("f2", ["sklearn"]), report("g", ["mrtk"]), report("h", ["mrtk"])])


def test_the_seed_spread_scores_each_cached_seed_alone_and_mixed(multilabel, tmp_path):
    import nlbse24_seeds

    names = ["bug", "feature", "question"]
    gold = {"o/a": [["bug"], ["feature"], ["question"]], "o/b": [["bug"], ["bug"], ["feature"]]}
    right = {repo: np.eye(3)[[names.index(labels[0]) for labels in issues]] for repo, issues in gold.items()}
    wrong = {repo: np.roll(scores, 1, axis=1) for repo, scores in right.items()}  # every issue's label moved on by one
    cache = tmp_path / "scores"
    cache.mkdir()

    def cache_run(key, scores, seconds=2.0):
        for repo in gold:
            np.savez(nlbse24_seeds.cache_file(cache, key, repo), scores=scores[repo], train_seconds=seconds)

    cache_run("tfidf", {repo: 0.9 * s + 0.1 * w for repo, s, w in zip(gold, wrong.values(), right.values())})
    cache_run("mp", right)  # seed 0: right everywhere
    cache_run("mp-seed1", wrong, seconds=4.0)  # seed 1: wrong everywhere
    np.savez(nlbse24_seeds.cache_file(cache, "mp-seed2", "o/a"), scores=right["o/a"], train_seconds=1.0)  # o/b missing

    row = nlbse24_seeds.seed_spread(cache, gold, names, "mp", ["tfidf"], seeds=3)

    assert row["missing_seeds"] == [2]
    assert [r["seed"] for r in row["seeds"]] == [0, 1]
    assert [r["alone"] for r in row["seeds"]] == [1.0, 0.0]
    # mixed with tfidf (mostly wrong): the right seed still wins each issue (0.5 + 0.05 > 0.45), the wrong one loses it
    assert [r["mixed"] for r in row["seeds"]] == [1.0, 0.0]
    assert row["mixed_mean"] == 0.5 and row["mixed_sd"] == pytest.approx(2**-0.5)
    assert row["train_seconds"] == 3.0
    # the two seeds averaged: a tie between the right and the wrong label, which tfidf's 0.9 on the wrong one breaks
    assert row["seeds_averaged_mixed"] == 0.0
    with pytest.raises(SystemExit, match="nope: no seed has cached scores"):
        nlbse24_seeds.seed_spread(cache, gold, names, "nope", ["tfidf"], seeds=2)

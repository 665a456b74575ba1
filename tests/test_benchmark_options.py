"""How the benchmark scripts read a system's options (no data needed)."""

from __future__ import annotations

from pathlib import Path

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

    assert (name, engine, settings, seeds) == ("mix", "ensemble", {"engines": ["tfidf", "embed"]}, 2)

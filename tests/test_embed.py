"""The embed engine (frozen and fine-tuned) and the ensemble, on CPU with a tiny random encoder."""

from __future__ import annotations

import json

import pytest

from issuelab.config import parse_config
from issuelab.errors import ConfigError
from issuelab.labeler import Labeler
from issuelab.train import train_run

from .conftest import FILLER, SIGNALS, TOY_CONFIG, make_issues
from .tiny_bert import build_tiny_bert


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    corpus = [" ".join(words) for words in SIGNALS.values()] + [" ".join(FILLER)]
    return build_tiny_bert(tmp_path_factory.mktemp("bert"), corpus)


def config_for(encoder, extra: str = ""):
    import tomllib

    text = TOY_CONFIG + f'\n[train.embed]\nmodel = "{encoder}"\nmax_tokens = 32\nepochs = 8\nbatch_size = 8\n' + extra
    return parse_config(tomllib.loads(text))


def micro_f1(labeler, issues) -> float:
    predictions = labeler.predict(issues)
    tp = sum(len(set(p.labels) & set(i.labels)) for p, i in zip(predictions, issues))
    return 2 * tp / (sum(len(p.labels) for p in predictions) + sum(len(i.labels) for i in issues))


@pytest.mark.parametrize("finetune", ["yes", "no"])
def test_embed_learns_the_toy_task_and_reloads_identically(encoder, tmp_path, finetune):
    config = config_for(encoder, f'finetune = "{finetune}"\n')
    issues = make_issues(240, seed=3)
    labeler, metrics = train_run(config, issues[:160], issues[160:200], tmp_path / "run", engine="embed")
    assert labeler.manifest["engine_info"]["finetuned"] is (finetune == "yes")
    assert micro_f1(labeler, issues[200:]) > 0.6  # a majority answer scores about 0.45 here
    loaded = Labeler.load(tmp_path / "run")
    assert [p.scores for p in loaded.predict(issues[200:])] == [p.scores for p in labeler.predict(issues[200:])]
    saved = {p.name for p in (tmp_path / "run/model").iterdir()}
    assert ("encoder" in saved) is (finetune == "yes")  # a frozen encoder is not copied into the run
    assert not list((tmp_path / "run").rglob("*.bin")) and not list((tmp_path / "run").rglob("*.pt"))  # safetensors only


def test_ensemble_tunes_weights_on_eval_and_reloads(encoder, tmp_path):
    config = config_for(encoder, '\n[train.ensemble]\nengines = ["tfidf", "embed"]\n')
    issues = make_issues(240, seed=4)
    labeler, _ = train_run(config, issues[:160], issues[160:200], tmp_path / "run", engine="ensemble")
    weights = labeler.manifest["engine_info"]["weights"]
    assert set(weights) == {"tfidf", "embed"} and sum(weights.values()) == pytest.approx(1.0)
    assert micro_f1(labeler, issues[200:]) > 0.6
    loaded = Labeler.load(tmp_path / "run")
    assert [p.labels for p in loaded.predict(issues[200:])] == [p.labels for p in labeler.predict(issues[200:])]
    assert json.loads((tmp_path / "run/model/ensemble.json").read_text())["weights"] == list(loaded.engine.weights)


def test_ensemble_options_are_checked():
    import tomllib

    with pytest.raises(ConfigError, match="engines must name two or more"):
        parse_config(tomllib.loads(TOY_CONFIG + '\n[train.ensemble]\nengines = ["tfidf"]\n'))
    with pytest.raises(ConfigError, match="finetune must be"):
        parse_config(tomllib.loads(TOY_CONFIG + '\n[train.embed]\nfinetune = "maybe"\n'))

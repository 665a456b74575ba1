"""The embed engine (frozen and fine-tuned) and the ensemble, on CPU with a tiny random encoder."""

from __future__ import annotations

import dataclasses
import json

import pytest

from issuelab.config import parse_config
from issuelab.errors import ConfigError
from issuelab.labeler import Labeler
from issuelab.train import train_run

from ..helpers import FILLER, SIGNALS, TOY_CONFIG, make_issues
from ..helpers.tiny_bert import build_tiny_bert

pytestmark = pytest.mark.torch  # tiny models, trained on the CPU


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    corpus = [" ".join(words) for words in SIGNALS.values()] + [" ".join(FILLER)]
    return build_tiny_bert(tmp_path_factory.mktemp("bert"), corpus)


def config_for(encoder, extra: str = "", dtype: str = "float32"):
    import tomllib

    text = TOY_CONFIG + (
        f'\n[train.embed]\nmodel = "{encoder}"\nmax_tokens = 32\nepochs = 8\nbatch_size = 8\ninference_dtype = "{dtype}"\n'
    ) + extra
    return parse_config(tomllib.loads(text))


def micro_f1(labeler, issues) -> float:
    predictions = labeler.predict(issues)
    tp = sum(len(set(p.labels) & set(i.labels)) for p, i in zip(predictions, issues))
    return 2 * tp / (sum(len(p.labels) for p in predictions) + sum(len(i.labels) for i in issues))


@pytest.mark.parametrize(("finetune", "dtype"), [("yes", "float32"), ("yes", "bfloat16"), ("no", "float32")])  # bfloat16: products autocast
def test_embed_learns_the_toy_task_and_reloads_identically(encoder, tmp_path, finetune, dtype):
    config = config_for(encoder, f'finetune = "{finetune}"\n', dtype)
    issues = make_issues(240, seed=3)
    labeler, metrics = train_run(config, issues[:160], issues[160:200], tmp_path / "run", engine="embed")
    assert labeler.manifest["engine_info"]["finetuned"] is (finetune == "yes")
    assert micro_f1(labeler, issues[200:]) > 0.6  # a majority answer scores about 0.45 here
    loaded = Labeler.load(tmp_path / "run")
    assert [p.scores for p in loaded.predict(issues[200:])] == [p.scores for p in labeler.predict(issues[200:])]
    saved = {p.name for p in (tmp_path / "run/model").iterdir()}
    assert ("encoder" in saved) is (finetune == "yes")  # a frozen encoder is not copied into the run
    assert not list((tmp_path / "run").rglob("*.bin")) and not list((tmp_path / "run").rglob("*.pt"))  # safetensors only
    evidence = loaded.explain(issues[200], issues[200].labels)  # the similar training issues carrying each label
    for label, (line,) in evidence.items():
        named = [int(ref.split(" ")[0]) for ref in line.removeprefix("similar labeled issues: ").split(", ")]
        assert len(named) == 3 and all(label in issues[n - 1].labels for n in named)  # make_issues ids are 1-based
    assert evidence == labeler.explain(issues[200], issues[200].labels)


def test_a_probe_started_head_is_the_frozen_engines_logistic_regressions_before_any_update(encoder):
    """head_init = "probe" (the default): before fine-tuning moves anything (learning rates 0), the fine-tuned engine answers
    exactly as the frozen engine's logistic regressions on the same encoder; a random head does not."""
    from issuelab.engines.embed import EmbedEngine, EmbedOptions
    from issuelab.train import make_task

    config = config_for(encoder)
    issues = make_issues(120, seed=5)
    task = make_task(config, issues[:80])
    frozen = EmbedEngine(EmbedOptions(model=str(encoder), finetune="no", max_tokens=32, inference_dtype="float32"))
    frozen.fit(issues[:80], None, task)
    expected = frozen.predict_scores(issues[80:])
    still = dict(model=str(encoder), finetune="yes", max_tokens=32, epochs=1, learning_rate=0.0, head_learning_rate=0.0, inference_dtype="float32")
    probed = EmbedEngine(EmbedOptions(**still))
    probed.fit(issues[:80], None, task)
    assert probed.predict_scores(issues[80:]) == pytest.approx(expected, abs=1e-4)
    random = EmbedEngine(EmbedOptions(**still, head_init="random"))
    random.fit(issues[:80], None, task)
    assert abs(random.predict_scores(issues[80:]) - expected).max() > 0.05
    with pytest.raises(ValueError, match="head_init"):
        EmbedOptions(head_init="zeros")
    # Single-label: the fine-tuned head takes a softmax of the probe's logits, the frozen one sigmoids: same top label.
    single = make_issues(120, seed=6, multi_label=False)
    task = dataclasses.replace(task, multi_label=False)
    frozen.fit(single[:80], None, task)
    probed.fit(single[:80], None, task)
    assert (probed.predict_scores(single[80:]).argmax(1) == frozen.predict_scores(single[80:]).argmax(1)).all()


def test_embed_answers_in_bfloat16_close_to_float32(encoder, tmp_path):
    import torch

    issues = make_issues(200, seed=8)
    labeler, _ = train_run(config_for(encoder), issues[:160], None, tmp_path / "run", engine="embed")
    engine_json = tmp_path / "run/model/engine.json"
    state = json.loads(engine_json.read_text())
    state["options"]["inference_dtype"] = "bfloat16"
    engine_json.write_text(json.dumps(state))
    loaded = Labeler.load(tmp_path / "run")
    assert next(loaded.engine.encoder.parameters()).dtype == torch.bfloat16
    assert next(labeler.engine.encoder.parameters()).dtype == torch.float32  # trained in float32
    scores = loaded.engine.predict_scores(issues[160:])
    assert scores.dtype == labeler.engine.predict_scores(issues[160:]).dtype
    assert scores == pytest.approx(labeler.engine.predict_scores(issues[160:]), abs=0.05)
    agree = sum(a.labels == b.labels for a, b in zip(loaded.predict(issues[160:]), labeler.predict(issues[160:])))
    assert agree >= 36  # of 40


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
    with pytest.raises(ConfigError, match="inference_dtype must be"):
        parse_config(tomllib.loads(TOY_CONFIG + '\n[train.embed]\ninference_dtype = "int8"\n'))


def fake_part_distributions(site, archive: bytes, pieces: int) -> list[str]:
    """Installed-looking distributions (dist-info + RECORD) that each hold one piece of `archive`."""
    names, size = [], -(-len(archive) // pieces)
    for k in range(1, pieces + 1):
        name, module = f"fake-model-part-{k:03d}", f"fake_model_part_{k:03d}"
        piece = f"{module}/input/model.zip.{k:03d}"
        (site / piece).parent.mkdir(parents=True)
        (site / piece).write_bytes(archive[(k - 1) * size : k * size])
        info = site / f"{module}-0.0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0.1\n")
        (info / "RECORD").write_text(f"{piece},,\n{info.name}/METADATA,,\n")
        names.append(name)
    return names


def test_mpnet_is_assembled_from_its_pypi_pieces_once_and_checked(tmp_path, monkeypatch):
    import hashlib
    import io
    import zipfile

    from issuelab.errors import IssuelabError
    from issuelab.llm import pypi_models

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("all-mpnet-base-v2/config.json", '{"model_type": "mpnet"}')
        archive.writestr("all-mpnet-base-v2/model.safetensors", b"\0" * 5000)
        archive.writestr("all-mpnet-base-v2/desktop.ini", "junk")
        archive.writestr("all-mpnet-base-v2/1_Pooling/config.json", "{}")
    data = buffer.getvalue()
    site = tmp_path / "site"
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("ISSUELAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(pypi_models, "MPNET_PARTS", fake_part_distributions(site, data, 3))
    monkeypatch.setattr(pypi_models, "MPNET_ZIP_SHA256", hashlib.sha256(data).hexdigest())
    path = pypi_models.encoder_path("all-mpnet-base-v2")
    assert sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()) == [
        "1_Pooling/config.json", "config.json", "model.safetensors"]  # fmt: skip
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no staging left behind
    assert pypi_models.encoder_path("all-mpnet-base-v2") == path  # the cache is reused

    monkeypatch.setenv("ISSUELAB_CACHE", str(tmp_path / "cache2"))
    monkeypatch.setattr(pypi_models, "MPNET_ZIP_SHA256", "0" * 64)
    with pytest.raises(IssuelabError, match="do not make the expected archive"):
        pypi_models.encoder_path("all-mpnet-base-v2")
    assert not list((tmp_path / "cache2/models").iterdir())
    monkeypatch.setattr(pypi_models, "MPNET_PARTS", ["fake-model-part-404"])
    with pytest.raises(IssuelabError, match="embed-mpnet"):
        pypi_models.encoder_path("all-mpnet-base-v2")

"""An encoder trained across repositories (`issuelab train-encoder`), on CPU with a tiny random encoder:
two repositories with different label sets train it; a third one, whose labels it never saw by those
names, is labeled better by it than by the encoder it started from."""

from __future__ import annotations

import json

import numpy as np
import pytest

from issuelab.cross_repo import (
    REPORT_FILE,
    ZERO_SHOT_SHARES,
    EncoderTrainingOptions,
    LabeledSet,
    choose_zero_shot_share,
    train_encoder,
)
from issuelab.data import Issue, Label, write_jsonl
from issuelab.engines import Task
from issuelab.engines.embed import EmbedEngine, EmbedOptions
from issuelab.errors import DataError, IssuelabError

from .helpers import FILLER, SIGNALS, make_issues
from .helpers.tiny_bert import build_tiny_bert

pytestmark = pytest.mark.torch

# The third repository's names for the same kinds of issue; its descriptions use half the signal words.
RENAMED = {"bug": "defect", "enhancement": "request", "documentation": "manual", "ci/cd": "automation"}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    corpus = [" ".join(words) for words in SIGNALS.values()] + [" ".join(FILLER)] + [" ".join(SIGNALS)] + [" ".join(RENAMED.values())]
    return build_tiny_bert(tmp_path_factory.mktemp("bert"), corpus)


def repository(name: str, labels: list[str], n: int, seed: int) -> LabeledSet:
    issues = [i for i in make_issues(n, seed=seed) if set(i.labels) <= set(labels)]
    return LabeledSet(name, tuple(Label(label, " ".join(SIGNALS[label][:3])) for label in labels), issues)


def top_label_accuracy(encoder_dir, issues: list[Issue]) -> float:
    """Top-scored label of the renamed repository, by cosine to "name + description"."""
    engine = EmbedEngine(EmbedOptions(model=str(encoder_dir), max_tokens=32, inference_dtype="float32"))
    engine.load_frozen()
    labels = tuple(Label(RENAMED[name], " ".join(SIGNALS[name][3:])) for name in SIGNALS)
    scores = engine.embed(issues) @ engine.embed(Task(labels, multi_label=True).label_issues()).T
    return float(np.mean([list(SIGNALS)[row.argmax()] in issue.labels for row, issue in zip(scores, issues)]))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])  # bfloat16: the products autocast, the weights float32
def test_an_encoder_trained_on_two_label_sets_labels_a_third_better(base, tmp_path, dtype):
    sets = [repository("acme/web", ["bug", "enhancement", "documentation"], 150, 1),
            repository("acme/infra", ["bug", "ci/cd", "documentation"], 150, 2)]  # fmt: skip
    options = EncoderTrainingOptions(base=str(base), epochs=3, max_tokens=32, learning_rate=2e-3, batch_size=8, dtype=dtype)
    report = train_encoder(sets, tmp_path / "encoder", options)
    assert [s["name"] for s in report["sets"]] == ["acme/web", "acme/infra"] and report["steps"] > 20
    assert report["loss_last_tenth"] < 0.7 * report["loss_first_tenth"]
    files = {p.name for p in (tmp_path / "encoder").iterdir()}
    assert {"config.json", "model.safetensors", REPORT_FILE} <= files and not any(f.endswith((".bin", ".pkl")) for f in files)
    saved = json.loads((tmp_path / "encoder" / REPORT_FILE).read_text())
    assert saved["steps"] == report["steps"] and saved["options"]["dtype"] == dtype
    held_out = make_issues(150, seed=3)
    before, after = top_label_accuracy(base, held_out), top_label_accuracy(tmp_path / "encoder", held_out)
    assert after > before + 0.1, (before, after)


@pytest.mark.parametrize("dropout", [True, False])
def test_the_encoder_trains_with_its_dropout_or_without_it(base, tmp_path, monkeypatch, dropout):
    modes = []
    embed = EmbedEngine._embed

    def recording(self, texts):
        modes.append(self.encoder.training)  # train mode is what switches the encoder's dropout on
        return embed(self, texts)

    monkeypatch.setattr(EmbedEngine, "_embed", recording)
    options = EncoderTrainingOptions(base=str(base), epochs=2, max_tokens=32, learning_rate=2e-3, batch_size=8, dropout=dropout)
    report = train_encoder([repository("acme/web", ["bug", "enhancement", "documentation"], 120, 1)], tmp_path / "e", options, calibrate=False)
    assert len(modes) == 2 * report["steps"] and set(modes) == {dropout}  # an issue batch and the label texts a step
    assert report["loss_last_tenth"] < 0.7 * report["loss_first_tenth"] and report["options"]["dropout"] is dropout


def test_bad_sets_and_an_existing_directory_are_refused(base, tmp_path):
    with pytest.raises(ValueError, match="dtype must be auto, float32 or bfloat16, not 'fp16'"):
        EncoderTrainingOptions(dtype="fp16")
    options = EncoderTrainingOptions(base=str(base), max_steps=1, max_tokens=32)
    with pytest.raises(DataError, match="acme/one: a label set needs at least two labels"):
        train_encoder([repository("acme/one", ["bug"], 20, 1)], tmp_path / "a", options)
    unlabeled = LabeledSet("acme/none", (Label("bug", "crash"), Label("question", "how")), [Issue(1, "hello", None, ["wontfix"])])
    with pytest.raises(DataError, match="acme/none: no issue carries one of its labels"):
        train_encoder([unlabeled], tmp_path / "b", options)
    (tmp_path / "c").mkdir()
    with pytest.raises(IssuelabError, match="already exists: choose another --out or pass --force"):
        train_encoder([repository("acme/web", ["bug", "enhancement"], 30, 1)], tmp_path / "c", options)
    assert not list((tmp_path / "c").iterdir())  # refused before anything was written


def test_the_cli_trains_from_configs_and_issue_files_and_fewshot_uses_the_encoder(base, tmp_path, cli):
    args = []
    for name, labels, seed in (("web", ["bug", "enhancement", "documentation"], 1), ("infra", ["bug", "ci/cd"], 2)):
        labeled = repository(f"acme/{name}", labels, 60, seed)
        described = "\n".join(f'"{label.name}" = "{label.description}"' for label in labeled.labels)
        (tmp_path / f"{name}.toml").write_text(f'[project]\nrepo = "acme/{name}"\n\n[labels]\n{described}\n')
        issues = [Issue(i.id, i.title, i.body, i.labels + ["needs triage"]) for i in labeled.issues]  # other labels: ignored
        write_jsonl(tmp_path / f"{name}.jsonl", issues)
        args += ["--data", tmp_path / f"{name}.toml", tmp_path / f"{name}.jsonl"]
    code, out, err = cli("train-encoder", *args, "--out", tmp_path / "encoder", "--base", base, "--max-steps", "4", "--dtype", "float32")
    assert code == 0, err
    assert "acme/web (" in out and "acme/infra (" in out and "4 steps" in out
    assert "zero-shot: a label is applied at" in out  # acme/web's issues carry up to two of its labels: calibrated
    assert json.loads((tmp_path / "encoder" / REPORT_FILE).read_text())["options"]["dtype"] == "float32"
    described = "\n".join(f'"{RENAMED[name]}" = "{" ".join(words)}"' for name, words in SIGNALS.items())
    config = tmp_path / "new.toml"
    config.write_text(f'[labels]\n{described}\n\n[train]\nengine = "fewshot"\nmulti_label = "true"\n\n'
                      f'[train.fewshot]\nmodel = "{tmp_path / "encoder"}"\nmax_tokens = 32\ninference_dtype = "float32"\nadapt_epochs = 0\n')  # fmt: skip
    write_jsonl(tmp_path / "unlabeled.jsonl", [Issue(i.id, i.title, i.body) for i in make_issues(30, seed=9)])
    code, out, err = cli("train", "--config", config, "--unlabeled", tmp_path / "unlabeled.jsonl", "--out", tmp_path / "run")
    assert code == 0, err
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["engine_info"]["unlabeled_issues"] == 30 and manifest["data"]["unlabeled_issues"] == 30
    assert manifest["engine_options"]["model"] == str(tmp_path / "encoder")
    code, _, err = cli("train-encoder", *args[:3], "--out", tmp_path / "encoder", "--base", base)
    assert code == 2 and "already exists" in err


def test_fewshot_reads_issues_at_the_length_its_encoder_was_trained_at(base, tmp_path):
    import tomllib

    from issuelab.config import parse_config
    from issuelab.engines.fewshot import DEFAULT_MAX_TOKENS
    from issuelab.labeler import Labeler
    from issuelab.train import train_run

    train_encoder([repository("acme/web", ["bug", "enhancement"], 40, 1)], tmp_path / "encoder",
                  EncoderTrainingOptions(base=str(base), max_steps=1, max_tokens=24))  # fmt: skip
    described = "\n".join(f'"{name}" = "{" ".join(words)}"' for name, words in SIGNALS.items())

    def config(model):
        return parse_config(tomllib.loads(f'[labels]\n{described}\n\n[train]\nengine = "fewshot"\nmulti_label = "true"\n\n'
                                          f'[train.fewshot]\nmodel = "{model}"\ninference_dtype = "float32"\nadapt_epochs = 0\n'))  # fmt: skip

    labeler, _ = train_run(config(tmp_path / "encoder"), make_issues(30, seed=4), None, tmp_path / "run")
    assert labeler.manifest["engine_info"]["max_tokens"] == 24 and labeler.engine.encoder.options.max_tokens == 24
    long_issue = Issue(1, "crash", " ".join(["error"] * 10 + FILLER * 10))
    cut = Issue(1, "crash", " ".join(["error"] * 10 + FILLER))  # the same first 24 tokens
    assert np.allclose(labeler.engine.encoder.embed([long_issue]), labeler.engine.encoder.embed([cut]), atol=1e-6)
    test = make_issues(10, seed=5)
    (tmp_path / "encoder" / REPORT_FILE).unlink()  # the run keeps the length it was trained with
    assert [p.scores for p in Labeler.load(tmp_path / "run").predict(test)] == [p.scores for p in labeler.predict(test)]
    stock, _ = train_run(config(base), make_issues(30, seed=4), None, tmp_path / "stock")  # no report: the default length
    assert stock.manifest["engine_info"]["max_tokens"] == DEFAULT_MAX_TOKENS


def test_the_zero_shot_share_is_the_one_that_labels_the_training_sets_best():
    """Ten labels, one per issue: the runner-up takes a quarter of the softmax, so a share of 2.5 or less
    (a threshold of 0.25 or less) adds a wrong label to every issue; where two labels are right and take 0.3
    each, a share above 3 drops one of them."""
    labels, issues = 10, 40
    one = np.full((issues, labels), 0.25 / 8)
    one[:, 0], one[:, 1] = 0.5, 0.25
    one_gold = np.zeros((issues, labels), bool)
    one_gold[:, 0] = True
    share, table = choose_zero_shot_share([one], [one_gold])
    assert share == 3.0 and set(table) == {str(s) for s in ZERO_SHOT_SHARES}  # the smallest of the shares that score 1.0
    assert table["3.0"] == 1.0 and table["2.5"] < 1.0
    two = np.full((issues, labels), 0.4 / 8)
    two[:, 0], two[:, 1] = 0.3, 0.3
    two_gold = np.zeros((issues, labels), bool)
    two_gold[:, :2] = True
    assert choose_zero_shot_share([two], [two_gold])[0] <= 3.0
    assert choose_zero_shot_share([one, two], [one_gold, two_gold])[0] == 3.0  # both right at 3: the mean decides


def test_a_zero_shot_run_applies_labels_at_the_share_its_encoder_was_calibrated_with(base, tmp_path):
    import tomllib

    from issuelab.config import parse_config
    from issuelab.engines.fewshot import DEFAULT_ZERO_SHOT_SHARE
    from issuelab.train import train_run

    options = EncoderTrainingOptions(base=str(base), max_steps=1, max_tokens=24)
    report = train_encoder([repository("acme/web", ["bug", "enhancement", "documentation"], 60, 1)], tmp_path / "encoder", options)
    assert report["zero_shot_share"] in ZERO_SHOT_SHARES and len(report["zero_shot_calibration"]) == len(ZERO_SHOT_SHARES)
    assert report["zero_shot_calibration"][str(report["zero_shot_share"])] == max(report["zero_shot_calibration"].values())
    single = LabeledSet("acme/cli", (Label("bug", "crash"), Label("question", "how")),
                        [Issue(i, "crash" if i % 2 else "how", None, ["bug" if i % 2 else "question"]) for i in range(20)])  # fmt: skip
    assert train_encoder([single], tmp_path / "single", options)["zero_shot_share"] is None  # the top label is taken there

    described = "\n".join(f'"{name}" = "{" ".join(words)}"' for name, words in SIGNALS.items())

    def thresholds(model, run, extra=""):
        config = parse_config(tomllib.loads(f'[labels]\n{described}\n\n[train]\nengine = "fewshot"\nmulti_label = "true"\n\n'
                                            f'[train.fewshot]\nmodel = "{model}"\ninference_dtype = "float32"\n{extra}'))  # fmt: skip
        labeler, _ = train_run(config, [], None, tmp_path / "runs" / run)
        return set(labeler.thresholds.values()), labeler.manifest["engine_options"]["zero_shot_share"]

    report_path = tmp_path / "encoder" / REPORT_FILE
    report_path.write_text(json.dumps(json.loads(report_path.read_text()) | {"zero_shot_share": 3.0}))
    assert thresholds(tmp_path / "encoder", "calibrated") == ({3.0 / len(SIGNALS)}, 3.0)  # kept in the run as used
    assert thresholds(tmp_path / "encoder", "given", "zero_shot_share = 1.5") == ({1.5 / len(SIGNALS)}, 1.5)
    assert thresholds(tmp_path / "single", "single") == ({DEFAULT_ZERO_SHOT_SHARE / len(SIGNALS)}, DEFAULT_ZERO_SHOT_SHARE)
    assert thresholds(base, "stock") == ({DEFAULT_ZERO_SHOT_SHARE / len(SIGNALS)}, DEFAULT_ZERO_SHOT_SHARE)


def test_fewshot_adapts_its_encoder_to_the_repositorys_labels_and_the_run_keeps_it(base, tmp_path):
    import gc
    import tomllib

    from issuelab.config import parse_config
    from issuelab.engines import embed
    from issuelab.labeler import Labeler
    from issuelab.metrics import score_outputs
    from issuelab.train import train_run

    described = "\n".join(f'"{name}" = "{" ".join(words[:2])}"' for name, words in SIGNALS.items())

    def config(adapt_epochs):
        return parse_config(tomllib.loads(f'[labels]\n{described}\n\n[train]\nengine = "fewshot"\nmulti_label = "true"\n\n[train.fewshot]\n'
                                          f'model = "{base}"\nmax_tokens = 32\ninference_dtype = "float32"\n'
                                          f'adapt_epochs = {adapt_epochs}\nadapt_learning_rate = 2e-3\n'))  # fmt: skip

    train, test = make_issues(80, seed=4), make_issues(60, seed=5)
    names = list(SIGNALS)

    def micro_f1(labeler) -> float:
        return score_outputs("fewshot", [i.labels for i in test], [p.output for p in labeler.predict(test)], names).f1

    frozen, _ = train_run(config(0), train, None, tmp_path / "frozen")
    adapted, _ = train_run(config(3), train, None, tmp_path / "adapted")
    info = adapted.manifest["engine_info"]["adapted_encoder"]
    assert info["steps"] >= 15 and info["loss_last_tenth"] < info["loss_first_tenth"]
    assert "adapted_encoder" not in frozen.manifest["engine_info"]
    assert micro_f1(adapted) > micro_f1(frozen) + 0.05, (micro_f1(adapted), micro_f1(frozen))
    # the run holds its encoder (safetensors, nothing pickled) and answers from it, base or no base
    encoder_files = {p.name for p in (tmp_path / "adapted").rglob("encoder/*")}
    assert "model.safetensors" in encoder_files and not any(f.endswith((".bin", ".pkl")) for f in encoder_files)
    report = json.loads(next((tmp_path / "adapted").rglob(f"encoder/{REPORT_FILE}")).read_text())
    assert report["options"]["dropout"] is False  # adapt_dropout's default reached the fine-tune
    loaded = Labeler.load(tmp_path / "adapted")
    assert tmp_path / "adapted" in loaded.engine.adapted.parents and loaded.engine.shared_files() == []
    assert [p.scores for p in loaded.predict(test)] == [p.scores for p in adapted.predict(test)]
    # the adapted encoder of a trained engine goes with it: its folder and the process's copy
    trained_at = adapted.engine.adapted
    del adapted
    gc.collect()
    assert not trained_at.exists() and not any(key[0] == str(trained_at) for key in embed._FROZEN_ENCODERS)


def test_an_adapted_encoder_answering_in_bfloat16_is_kept_in_bfloat16(base, tmp_path):
    import tomllib

    from safetensors import safe_open

    from issuelab.config import parse_config
    from issuelab.labeler import Labeler
    from issuelab.train import train_run

    described = "\n".join(f'"{name}" = "{" ".join(words[:2])}"' for name, words in SIGNALS.items())

    def config(dtype):
        return parse_config(tomllib.loads(f'[labels]\n{described}\n\n[train]\nengine = "fewshot"\nmulti_label = "true"\n\n[train.fewshot]\n'
                                          f'model = "{base}"\nmax_tokens = 32\ninference_dtype = "{dtype}"\nadapt_epochs = 1\n'))  # fmt: skip

    train, test = make_issues(40, seed=4), make_issues(20, seed=5)
    sizes = {}
    for dtype in ("float32", "bfloat16"):
        labeler, _ = train_run(config(dtype), train, None, tmp_path / dtype)
        weights = next((tmp_path / dtype).rglob("encoder/model.safetensors"))
        with safe_open(weights, "pt") as saved:
            assert {str(saved.get_tensor(key).dtype) for key in saved.keys()} == {f"torch.{dtype}"}
        sizes[dtype] = weights.stat().st_size
        # the run answers from the folder it keeps, so its answers are the reloaded run's
        assert [p.scores for p in Labeler.load(tmp_path / dtype).predict(test)] == [p.scores for p in labeler.predict(test)]
    assert sizes["bfloat16"] < 0.6 * sizes["float32"]
    with pytest.raises(ValueError, match="save_dtype"):
        train_encoder([repository("one", ["bug", "enhancement"], 20, 1)], tmp_path / "x", save_dtype="float16")

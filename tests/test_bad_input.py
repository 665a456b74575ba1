"""Bad input gets a clear error (exit 2, the file, line or field, and the fix) or a warning kept in the
run; a good run is never replaced by a bad one, also when training is killed half-way."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from issuelab.config import load_config
from issuelab.data import Issue, read_issues, write_jsonl
from issuelab.errors import ConfigError, DataError, RunError
from issuelab.github.client import GitHubClient
from issuelab.github.labeling import RunDirectory
from issuelab.labeler import Labeler
from issuelab.train import degenerate, train_run

from .helpers import TOY_CONFIG, make_issues


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A config, training data and a good tfidf run (seed 0), made once."""
    root = tmp_path_factory.mktemp("good")
    (root / "issuelab.toml").write_text(TOY_CONFIG, encoding="utf-8")
    write_jsonl(root / "train.jsonl", make_issues(120))
    config = load_config(root / "issuelab.toml")
    train_run(config, read_issues(root / "train.jsonl", config.label_names), None, root / "run", engine="tfidf")
    return root


@pytest.fixture
def run(good, tmp_path) -> Path:
    """A fresh copy of the good run to damage."""
    return Path(shutil.copytree(good / "run", tmp_path / "run"))


def files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def drop_a_label_row(model: Path) -> None:
    with np.load(model / "weights.npz", allow_pickle=False) as weights:
        arrays = dict(weights)
    arrays["coef"], arrays["intercept"] = arrays["coef"][:-1], arrays["intercept"][:-1]
    np.savez(model / "weights.npz", **arrays)


DAMAGES = {
    "manifest truncated": (lambda r: (r / "manifest.json").write_text('{"engine": "tfi'), "manifest.json: damaged"),
    "labels missing": (lambda r: (r / "labels.json").unlink(), "labels.json: missing"),
    "threshold not a number": (lambda r: (r / "thresholds.json").write_text('{"bug": "high"}'), "thresholds.json: thresholds that are not numbers: 'bug'"),
    "policy field unknown": (lambda r: (r / "manifest.json").write_text(
        json.dumps(json.loads((r / "manifest.json").read_text()) | {"policy": {"bogus": 1}})), "manifest.json: field 'policy'"),
    "weights truncated": (lambda r: (r / "model/weights.npz").write_bytes((r / "model/weights.npz").read_bytes()[:100]),
                          "model: the tfidf model cannot be loaded"),
    "weights for fewer labels": (lambda r: drop_a_label_row(r / "model"), "model: the model gives 3 scores for 4 labels"),
}  # fmt: skip


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_run_is_refused_with_the_file_named(damage, run, cli):
    spoil, message = DAMAGES[damage]
    spoil(run)
    with pytest.raises(RunError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Labeler.load(run)
    code, _, err = cli("predict", "--model", run, "--title", "crash")
    assert code == 2 and message in err and "Traceback" not in err


def test_the_service_keeps_the_good_run_when_a_damaged_one_takes_its_place(good, tmp_path, monkeypatch):
    models = tmp_path / "models"
    shutil.copytree(good / "run", models / "acme/widgets")
    runs = RunDirectory(models, GitHubClient("http://127.0.0.1:9", "t"))
    first = runs.labeler_for("acme/widgets")
    manifest = models / "acme/widgets/manifest.json"
    (models / "acme/widgets/thresholds.json").write_text("[1, 2")
    manifest.write_text(manifest.read_text())  # a new version appears
    assert runs.labeler_for("acme/widgets") is first
    loads = []
    monkeypatch.setattr(Labeler, "load", classmethod(lambda cls, d: loads.append(d)))
    assert runs.labeler_for("acme/widgets") is first and loads == []  # the refused version is not read again per issue
    monkeypatch.undo()
    with pytest.raises(RunError, match="thresholds.json: damaged"):
        RunDirectory(models, GitHubClient("http://127.0.0.1:9", "t")).labeler_for("acme/widgets")


def test_training_data_without_a_label_never_replaces_a_good_run(good, run, tmp_path, cli):
    unlabeled = tmp_path / "unlabeled.jsonl"
    write_jsonl(unlabeled, [Issue(i.id, i.title, i.body, []) for i in make_issues(60)])
    before = files(run)
    code, _, err = cli("train", "--config", good / "issuelab.toml", "--train", unlabeled, "--out", run, "--force")
    assert code == 2 and "no training issue carries a label" in err and "unchanged" in err and "--force-degenerate" in err
    assert files(run) == before
    code, _, err = cli("train", "--config", good / "issuelab.toml", "--train", unlabeled, "--out", run, "--force", "--force-degenerate")
    assert code == 0, err
    assert any("no training issue carries a label" in w for w in json.loads((run / "manifest.json").read_text())["warnings"])


def test_a_model_with_the_same_scores_for_every_issue_is_degenerate(good):
    labeler = Labeler.load(good / "run")

    class Constant:
        def predict_scores(self, issues):
            return np.full((len(issues), 4), 0.3)

    labeler.engine = Constant()
    assert "exactly the same scores" in degenerate(labeler, make_issues(20))
    assert degenerate(Labeler.load(good / "run"), make_issues(20)) is None


def test_rare_and_unseen_labels_and_duplicate_ids_are_warned_about_and_recorded(good, tmp_path, cli):
    issues = [i for i in make_issues(120) if "ci/cd" not in i.labels and "documentation" not in i.labels]
    docs = next(i for i in make_issues(120) if i.labels == ["documentation"])
    train, eval = tmp_path / "train.jsonl", tmp_path / "eval.jsonl"
    write_jsonl(train, issues + [docs, issues[0]])
    write_jsonl(eval, issues[1:11])
    code, _, err = cli("train", "--config", good / "issuelab.toml", "--train", train, "--eval", eval, "--out", tmp_path / "r")
    assert code == 0, err
    warnings = json.loads((tmp_path / "r/manifest.json").read_text())["warnings"]
    assert any(w.startswith("no training issue carries ci/cd") for w in warnings)
    assert any("fewer than 3 training issues carry documentation (1)" in w for w in warnings)
    assert any(f"{train}: 1 issue ids appear more than once (e.g. {issues[0].id})" in w for w in warnings)
    assert any("10 issue ids are in both the training and the evaluation data" in w for w in warnings)
    assert err.count("issuelab: warning:") == len(warnings)


def test_every_issue_empty_is_a_clear_error_and_an_empty_issue_gets_no_label(good, tmp_path, cli):
    empty = tmp_path / "empty.jsonl"
    write_jsonl(empty, [Issue(k, "", None if k % 2 else "  ", ["bug"]) for k in range(1, 30)])
    code, _, err = cli("train", "--config", good / "issuelab.toml", "--train", empty, "--out", tmp_path / "r")
    assert code == 2 and f"{empty}: every issue has an empty title and body" in err and "Traceback" not in err
    predictions = Labeler.load(good / "run").predict([Issue(1, "", None), Issue(2, "crash traceback", "it fails")])
    assert predictions[0].labels == [] and predictions[1].labels[0] == "bug"


def test_bytes_that_are_not_utf8_are_named_by_line_and_exact_offset(tmp_path, good):
    path = tmp_path / "issues.jsonl"
    lines = [json.dumps({"id": k, "title": "x" * 200, "body": None, "labels": ["bug"]}).encode() + b"\n" for k in range(100)]
    bad = b'{"id": 100, "title": "caf\xe9", "body": null, "labels": []}\n'
    path.write_bytes(b"".join(lines) + bad)
    column = bad.index(b"\xe9")
    offset = sum(map(len, lines)) + column
    assert offset > 8192  # past the first buffer
    with pytest.raises(DataError, match=rf"{path}:101: not valid UTF-8 \(byte 0xe9 at column {column + 1}, file offset {offset}\)"):
        read_issues(path)


def test_a_config_that_is_not_utf8_or_is_a_directory_gets_a_clear_error(tmp_path, cli):
    config = tmp_path / "issuelab.toml"
    config.write_bytes(TOY_CONFIG.encode() + b"\n# caf\xe9\n")
    line = TOY_CONFIG.count("\n") + 2
    with pytest.raises(ConfigError, match=rf"{config}:{line}: not valid UTF-8 \(byte 0xe9\)"):
        load_config(config)
    code, _, err = cli("train", "--config", tmp_path, "--train", tmp_path / "x.jsonl", "--out", tmp_path / "r")
    assert code == 2 and f"{tmp_path}: is a directory" in err and "Traceback" not in err


def test_split_refuses_to_overwrite_a_split_without_force(good, tmp_path, cli):
    out = tmp_path / "splits"
    args = ["split", "--config", good / "issuelab.toml", good / "train.jsonl", "--out", out]
    assert cli(*args)[0] == 0
    before = files(out)
    code, _, err = cli(*args, "--seed", "7")
    assert code == 2 and "already holds a split" in err and "--force" in err and files(out) == before
    assert cli(*args, "--seed", "7", "--force")[0] == 0 and files(out) != before


KILLER = textwrap.dedent("""
    import os, pathlib, shutil, sys
    import issuelab.labeler
    from issuelab.config import load_config
    from issuelab.data import read_issues
    from issuelab.train import train_run

    config_path, data, out, step = sys.argv[1:]
    die = lambda *a, **k: os._exit(9)
    if step == "inside save":
        issuelab.labeler.write_json = die
    elif step.startswith("before rename"):
        real, calls = pathlib.Path.rename, []
        def rename(self, target):
            calls.append(self)
            return die() if len(calls) == int(step[-1]) else real(self, target)
        pathlib.Path.rename = rename
    elif step in ("removing a stale old run", "removing the old run"):
        real, calls = shutil.rmtree, []
        def rmtree(path, *a, **k):
            calls.append(path) if str(path).endswith(".old") else None
            return die() if len(calls) == (1 if step == "removing a stale old run" else 2) else real(path, *a, **k)
        shutil.rmtree = rmtree
    config = load_config(config_path)
    train_run(config, read_issues(data, config.label_names), None, out, engine="tfidf", seed=5, force=True)
""")


@pytest.mark.parametrize("step", ["inside save", "removing a stale old run", "before rename 1", "before rename 2", "removing the old run"])
def test_replacing_a_run_survives_a_kill_at_every_step(step, good, run):
    killed = subprocess.run([sys.executable, "-c", KILLER, good / "issuelab.toml", good / "train.jsonl", run, step], capture_output=True, text=True)
    assert killed.returncode == 9, killed.stderr
    labeler = Labeler.load(run)  # a complete run is there: the old one, or the new one once it was in place
    assert labeler.manifest["seed"] == (5 if step == "removing the old run" else 0)
    assert labeler.predict([Issue(1, "crash traceback", "it fails")])[0].labels[0] == "bug"
    config = load_config(good / "issuelab.toml")
    train_run(config, read_issues(good / "train.jsonl", config.label_names), None, run, engine="tfidf", seed=6, force=True)
    assert Labeler.load(run).manifest["seed"] == 6 and not (run.parent / f".{run.name}.old").exists()


def test_the_action_and_the_service_refuse_a_damaged_run_before_any_api_call(run, tmp_path, cli, monkeypatch):
    (run / "thresholds.json").write_text('{"bug": [0.5]}')
    monkeypatch.setenv("GITHUB_TOKEN", "t0ken")
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", "s3cret")
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"action": "opened", "issue": {"number": 3}, "repository": {"full_name": "acme/widgets"}}))
    message = "thresholds.json: thresholds that are not numbers: 'bug'"
    code, _, err = cli("action", "--model", run, "--event", event, "--api-url", "http://127.0.0.1:9")
    assert code == 2 and message in err and "Traceback" not in err
    code, _, err = cli("serve", "--model", run, "--state", tmp_path / "state.sqlite3", "--api-url", "http://127.0.0.1:9")
    assert code == 2 and message in err and "Traceback" not in err

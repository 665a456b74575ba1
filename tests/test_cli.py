"""The pipeline through the command line, as a user runs it: split -> train -> evaluate -> predict."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest

from issuelab.data import Issue, read_issues, write_jsonl

from .helpers import make_issues


@pytest.fixture
def run_dir(cli, toy_config, tmp_path):
    data = tmp_path / "issues.jsonl"
    write_jsonl(data, make_issues(300))
    code, _, err = cli("split", "--config", toy_config, data, "--out", tmp_path / "splits")
    assert code == 0, err
    code, out, err = cli(
        "train", "--config", toy_config, "--train", tmp_path / "splits/train.jsonl",
        "--eval", tmp_path / "splits/eval.jsonl", "--out", tmp_path / "run",
    )  # fmt: skip
    assert code == 0, err
    assert "trained tfidf on" in out and "Micro-Avg F1" in out
    return tmp_path / "run"


def test_train_writes_a_complete_run_directory(run_dir, tmp_path):
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["engine"] == "tfidf" and manifest["seed"] == 0 and manifest["multi_label"] is True
    sizes = json.loads((tmp_path / "splits/manifest.json").read_text())["splits"]
    assert manifest["data"]["train"]["examples"] == sizes["train"]["examples"] and len(manifest["data"]["train"]["sha256"]) == 64
    # tfidf refits in a second: thresholds out of fold over train + eval, then the model on both
    held_out = sizes["train"]["examples"] + sizes["eval"]["examples"]
    assert manifest["eval_metrics"]["name"] == "out-of-fold" and manifest["eval_metrics"]["examples"] == held_out
    assert manifest["eval_metrics"]["f1"]["value"] > 0.8 and manifest["calibration"]["source"] == "out-of-fold (5 folds)"
    assert {"python", "numpy", "scikit-learn", "issuelab"} <= set(manifest["versions"])
    assert manifest["policy"]["max_labels"] == 2  # the config says 3; no training issue carries more than 2
    assert json.loads((run_dir / "labels.json").read_text())[3] == {
        "name": "ci/cd", "description": "Issues related to continuous integration and deployment pipelines."
    }  # fmt: skip
    assert set(json.loads((run_dir / "thresholds.json").read_text())) == {"bug", "enhancement", "documentation", "ci/cd"}
    assert "{title}" in (run_dir / "prompt.txt").read_text()
    mask = os.umask(0)
    os.umask(mask)
    assert run_dir.stat().st_mode & 0o777 == 0o777 & ~mask  # not mkdtemp's 0700: a service user can read it


def test_train_refuses_to_overwrite_without_force(cli, toy_config, run_dir, tmp_path):
    before = (run_dir / "weights.npz").exists() or sorted(p.name for p in run_dir.iterdir())
    args = ["train", "--config", toy_config, "--train", tmp_path / "splits/train.jsonl", "--out", run_dir]
    code, _, err = cli(*args)
    assert code == 2 and "already exists" in err and "--force" in err
    assert sorted(p.name for p in run_dir.iterdir()) == before
    code, _, err = cli(*args, "--force", "--seed", 5)
    assert code == 0, err
    assert json.loads((run_dir / "manifest.json").read_text())["seed"] == 5
    assert not list(tmp_path.glob(".run.*"))  # no staging leftovers


def test_evaluate_model_on_data(cli, toy_config, run_dir, tmp_path):
    preds, metrics = tmp_path / "preds.jsonl", tmp_path / "metrics.json"
    code, out, err = cli(
        "evaluate", "--config", toy_config, "--model", run_dir, "--data", tmp_path / "splits/test.jsonl",
        "--out", preds, "--json", metrics,
    )  # fmt: skip
    assert code == 0, err
    assert out.splitlines()[0].split() == ["METRIC", "RUN"]
    report = json.loads(metrics.read_text())["models"][0]
    assert report["examples"] == len(read_issues(tmp_path / "splits/test.jsonl", None)) and report["invalid"] == 0 and report["f1"]["value"] > 0.8
    records = read_issues(preds, None)
    assert all(r.extra["output"] and set(r.extra["scores"]) == {"bug", "enhancement", "documentation", "ci/cd"} for r in records)
    # the written predictions score the same through --pred
    code, out2, _ = cli("evaluate", "--config", toy_config, "--pred", f"run={preds}")
    assert code == 0 and out2.splitlines()[2] == out.splitlines()[2]


def test_predict_one_issue_from_flags_and_stdin(cli, run_dir, monkeypatch):
    code, out, err = cli("predict", "--model", run_dir, "--title", "crash traceback exception", "--body", "it is broken")
    assert code == 0, err
    label, score = out.splitlines()[0].split("\t")
    assert label == "bug" and float(score) > 0.5

    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps({"title": "docs typo in readme", "body": None})))
    code, out, err = cli("predict", "--model", run_dir, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["labels"][0] == "documentation" and len(result["scores"]) == 4

    monkeypatch.setattr(sys, "stdin", io.StringIO("{not json"))
    code, _, err = cli("predict", "--model", run_dir)
    assert code == 2 and "stdin: malformed JSON" in err


def test_predict_batch(cli, run_dir, tmp_path):
    unlabeled = tmp_path / "new.jsonl"
    write_jsonl(unlabeled, [{"id": 1, "title": "workflow pipeline runner", "body": None}, {"id": 2, "title": "add option", "body": "feature"}])
    out = tmp_path / "preds.jsonl"
    code, _, err = cli("predict", "--model", run_dir, "--input", unlabeled, "--out", out)
    assert code == 0, err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["output"].split(", ")[0] for r in rows] == ["ci/cd", "enhancement"]
    assert rows[0]["labels"] == []  # unlabeled input stays unlabeled; predictions go to output/scores


def test_predict_errors(cli, run_dir, tmp_path):
    code, _, err = cli("predict", "--model", tmp_path / "nope", "--title", "x")
    assert code == 2 and "not a run directory" in err
    code, _, err = cli("predict", "--model", run_dir, "--input", tmp_path / "x.jsonl")
    assert code == 2 and "--input needs --out" in err


def test_crossval(cli, toy_config, tmp_path):
    data = tmp_path / "issues.jsonl"
    write_jsonl(data, make_issues(150))
    out_json = tmp_path / "cv.json"
    code, out, err = cli("crossval", "--config", toy_config, "--data", data, "--folds", 3, "--repeats", 2, "--json", out_json)
    assert code == 0, err
    report = json.loads(out_json.read_text())
    model = report["models"][0]
    assert model["examples"] == 300  # every issue once per repeat
    assert model["f1"]["value"] > 0.8
    assert report["crossval"]["seeds"] == [0, 1] and len(report["crossval"]["fold_f1"]) == 6
    assert "per-fold micro F1" in out


def test_crossval_with_a_label_that_has_no_positives_in_a_fold(cli, toy_config, tmp_path):
    issues = make_issues(60, multi_label=False)
    issues = [i for i in issues if "ci/cd" not in i.labels]
    issues.append(Issue(999, "workflow pipeline deploy", None, ["ci/cd"]))  # one positive: 4 of 5 folds see none
    data = tmp_path / "issues.jsonl"
    write_jsonl(data, issues)
    code, out, err = cli("crossval", "--config", toy_config, "--data", data, "--folds", 5, "--json", tmp_path / "cv.json")
    assert code == 0, err
    per_label = json.loads((tmp_path / "cv.json").read_text())["models"][0]["per_label"]
    assert per_label["ci/cd"]["support"] == 1


def test_errors_exit_2_without_traceback(cli, toy_config, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "title": "a", "body": null, "labels": ["bug"]}\n{oops\n', encoding="utf-8")
    code, _, err = cli("train", "--config", toy_config, "--train", bad, "--out", tmp_path / "r")
    assert code == 2 and f"{bad}:2: malformed JSON" in err and "Traceback" not in err
    code, _, err = cli("train", "--config", toy_config, "--train", tmp_path / "missing.jsonl", "--out", tmp_path / "r")
    assert code == 2 and "file not found" in err
    code, _, err = cli("crossval", "--config", toy_config, "--data", bad, "--engine", "gpt")
    assert code == 2


def test_console_script_help_is_fast_to_import():
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "issuelab", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "predict" in result.stdout
    heavy = [m for m in ("sklearn", "scipy", "numpy") if f"| {m}\n" in result.stderr]
    assert heavy == []  # --help must not import the numerical stack


def test_predict_explain_gives_the_terms_behind_each_label(cli, tmp_path, toy_config):
    from issuelab.data import write_jsonl

    from .helpers import make_issues

    write_jsonl(tmp_path / "train.jsonl", make_issues(120, seed=1))
    code, _, err = cli("train", "--config", toy_config, "--train", tmp_path / "train.jsonl", "--engine", "tfidf", "--out", tmp_path / "run")
    assert code == 0, err
    code, out, err = cli("predict", "--model", tmp_path / "run", "--title", "crash with traceback", "--body", "it fails", "--explain", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert "bug" in result["labels"] and set(result["evidence"]) == set(result["labels"])
    (terms,) = result["evidence"]["bug"]
    assert terms.startswith("terms: ") and any(word in terms for word in ("crash", "traceback", "fails"))

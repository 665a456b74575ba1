"""The real data: NLBSE'24 issues ($ISSUELAB_DATA/nlbse24), through the benchmark and the demo script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ISSUELAB_DATA", ROOT.parent / "shared/data")) / "nlbse24"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (DATA / "issues_train.csv").exists(), reason=f"NLBSE'24 data not found in {DATA}"),
]


def test_benchmark_tfidf_reaches_the_target(tmp_path):
    out = tmp_path / "nlbse24.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/nlbse24.py"), "--engine", "tfidf", "--data", str(DATA), "--json", str(out)],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert set(report["repos"]) == {"facebook/react", "tensorflow/tensorflow", "microsoft/vscode", "bitcoin/bitcoin", "opencv/opencv"}
    assert all(r["train"] == 300 and r["test"] == 300 for r in report["repos"].values())
    assert report["cross_repo_f1"] >= 0.75
    assert report["predict_ms_per_issue"] < 50
    assert "SetFit" in result.stdout and "cross-repo" in result.stdout


def test_benchmark_sets_the_options_of_an_ensembles_members(tmp_path):
    def cross_repo(*args: str) -> float:
        out = tmp_path / "nlbse24.json"
        command = [sys.executable, str(ROOT / "benchmarks/nlbse24.py"), "--data", str(DATA), "--repos", "bitcoin/bitcoin"]
        result = subprocess.run([*command, *args, "--json", str(out)], capture_output=True, text=True, cwd=ROOT)
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(out.read_text())["cross_repo_f1"]

    two_tfidfs = ["--engine", "ensemble", "--set", 'ensemble.engines=["tfidf","tfidf"]']
    small_c = cross_repo("--engine", "tfidf", "--set", "C=0.01")
    assert small_c != cross_repo("--engine", "tfidf")  # C matters here
    assert cross_repo(*two_tfidfs, "--set", "tfidf.C=0.01") == small_c  # two equal members answer as one


def test_compare_benchmark_on_the_pooled_multi_label_task(tmp_path):
    out = tmp_path / "report"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/compare_engines.py"), "--dataset", "nlbse-multilabel", "--folds", "2",
         "--engines", "tfidf", "--data", str(DATA), "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "comparison.json").read_text())
    (tfidf,) = report["engines"]
    data = report["data"]
    assert {k: data[k] for k in ("issues", "folds", "labels", "multi_label")} == {"issues": 3000, "folds": 2, "labels": 8, "multi_label": True}
    assert data["labels_per_issue"] == 2.0 and tfidf["metrics"]["examples"] == 3000
    assert tfidf["micro_f1"] > 0.8 and tfidf["metrics"]["labels_per_example"] > 1.5  # two gold labels per issue
    assert (out / "report.html").stat().st_size > 50_000 and (out / "cooccurrence-tfidf.png").exists()


def test_demo_script_runs_the_whole_pipeline(tmp_path):
    env = dict(os.environ, ISSUELAB_DATA=str(DATA.parent), WORK=str(tmp_path / "demo"))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    result = subprocess.run(["bash", "scripts/demo.sh"], capture_output=True, text=True, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "demo/test-metrics.json").read_text())["models"][0]
    assert metrics["examples"] == 60 and metrics["invalid"] == 0 and metrics["f1"]["value"] > 0.7
    crossval = json.loads((tmp_path / "demo/crossval-metrics.json").read_text())["models"][0]
    assert crossval["examples"] == 600
    assert result.stdout.strip().splitlines()[-1].split("\t")[0] in {"bug", "feature", "question"}


def test_webhook_service_under_load_loses_and_doubles_nothing(tmp_path):
    """`issuelab serve` in its own process, deliveries from this one, GitHub failing every 10th call."""
    out = tmp_path / "load.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/webhook_load.py"), "--data", str(DATA), "--deliveries", "300",
         "--redeliveries", "30", "--concurrency", "20", "--fail-every", "10", "--json", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert report["issues_with_one_post"] == 300 and report["issues_lost"] == 0 and report["issues_with_several_posts"] == 0
    assert report["service_counts"]["duplicates"] == 30 and report["statuses"] == {"200": 30, "202": 300}
    assert report["github_calls"] > 900 and not report["token_in_log"]  # retries happened; nothing leaked


def test_annotation_at_scale_accounts_for_every_issue_and_resumes_from_the_cache(tmp_path):
    """Real issue texts through the real openai client to a local server failing 10% of requests."""
    out = tmp_path / "annotate.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/annotate_throughput.py"), "--data", str(DATA), "--issues", "300",
         "--latency", "0.05", "--baseline-issues", "10", "--json", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert report["labeled"] + report["invalid"] == 300 and report["unaccounted"] == 0
    assert report["invalid"] == 3 and report["labels_equal_to_gold"] == report["labeled"]  # issues 7, 107, 207 never valid
    assert report["requests_failed_by_server"] > 0 and report["second_run_requests"] == 0

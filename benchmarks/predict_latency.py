"""Prediction latency of a tfidf run: cold CLI, in-process load, warm single-issue p50/p95.

Baselines measured in the same run:
- the interpreter floor: `python -c "import numpy"`, the least any numpy-based CLI can take;
- scikit-learn's own path for the same model family: TfidfVectorizer (word 1-2) + TfidfVectorizer
  (char_wb 2-5) in a FeatureUnion and a one-vs-rest LogisticRegression, predicting one issue warm.

    python benchmarks/predict_latency.py --json docs/results/predict-latency.json

Trains on NLBSE'24 facebook/react (300 issues) from $ISSUELAB_DATA/nlbse24.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import NLBSE_CONFIG, machine, nlbse_data_dir, percentile, write_report
from issuelab.config import load_config
from issuelab.importers import import_issues
from issuelab.labeler import Labeler
from issuelab.train import train_run


def timed_runs(command: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return times


def warm_latencies(predict_one, issues, repeats: int) -> list[float]:
    predict_one(issues[0])  # first call fills caches
    times = []
    for _ in range(repeats):
        for issue in issues:
            started = time.perf_counter()
            predict_one(issue)
            times.append(time.perf_counter() - started)
    return times


def sklearn_baseline(train, test, labels, repeats):
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import FeatureUnion, make_pipeline

    features = FeatureUnion([
        ("word", TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)),
        ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True)),
    ])  # fmt: skip
    model = make_pipeline(features, OneVsRestClassifier(LogisticRegression(C=10.0, solver="liblinear")))
    y = np.array([[label in issue.labels for label in labels] for issue in train])
    model.fit([issue.text[:6000] for issue in train], y)
    return warm_latencies(lambda issue: model.predict_proba([issue.text[:6000]]), test, repeats)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=nlbse_data_dir())
    parser.add_argument("--repo", default="facebook/react")
    parser.add_argument("--cli-runs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3, help="passes over the 300 test issues, warm")
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()

    config = load_config(NLBSE_CONFIG)
    data = Path(args.data)
    train, _ = import_issues(data / "issues_train.csv", config.label_names, repos=[args.repo])
    test, _ = import_issues(data / "issues_test.csv", config.label_names, repos=[args.repo])

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        train_run(config, train, None, run_dir)
        size_kb = sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file()) / 1024

        python = sys.executable
        floor = timed_runs([python, "-c", "import numpy"], args.cli_runs)
        cli = timed_runs(
            [python, "-m", "issuelab", "predict", "--model", str(run_dir), "--title", test[0].title, "--body", test[0].body or ""],
            args.cli_runs,
        )
        started = time.perf_counter()
        labeler = Labeler.load(run_dir)
        load_seconds = time.perf_counter() - started

    ours = warm_latencies(lambda issue: labeler.predict([issue]), test, args.repeats)
    baseline = sklearn_baseline(train, test, config.label_names, args.repeats)

    ms = 1000.0
    report = {
        "machine": machine(),
        "repo": args.repo,
        "run_size_kb": round(size_kb, 1),
        "cli_cold_seconds_median": round(statistics.median(cli), 3),
        "python_numpy_floor_seconds_median": round(statistics.median(floor), 3),
        "load_ms": round(load_seconds * ms, 1),
        "warm_ms": {"p50": round(percentile(ours, 0.5) * ms, 3), "p95": round(percentile(ours, 0.95) * ms, 3)},
        "sklearn_baseline_warm_ms": {"p50": round(percentile(baseline, 0.5) * ms, 3), "p95": round(percentile(baseline, 0.95) * ms, 3)},
    }
    report["speedup_p50_vs_sklearn"] = round(report["sklearn_baseline_warm_ms"]["p50"] / report["warm_ms"]["p50"], 2)

    print(f"{'MEASURE':<44} {'VALUE':>10}")
    print(f"{'-' * 44} {'-' * 10}")
    rows = [
        ("CLI: load run + predict one issue (median)", f"{report['cli_cold_seconds_median']:.3f} s"),
        ("  floor: python -c 'import numpy' (median)", f"{report['python_numpy_floor_seconds_median']:.3f} s"),
        ("in-process load of the run", f"{report['load_ms']:.1f} ms"),
        ("warm, one issue, p50", f"{report['warm_ms']['p50']:.3f} ms"),
        ("warm, one issue, p95", f"{report['warm_ms']['p95']:.3f} ms"),
        ("  baseline scikit-learn pipeline, p50", f"{report['sklearn_baseline_warm_ms']['p50']:.3f} ms"),
        ("  baseline scikit-learn pipeline, p95", f"{report['sklearn_baseline_warm_ms']['p95']:.3f} ms"),
        ("speed-up p50 vs scikit-learn", f"{report['speedup_p50_vs_sklearn']:.2f}x"),
        ("run directory size", f"{size_kb:.0f} kB"),
    ]
    for name, value in rows:
        print(f"{name:<44} {value:>10}")
    write_report(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

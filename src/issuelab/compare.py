"""`compare`: several engines trained and scored on the same data, with their costs, and a recommendation.

Two ways to hold data out: a split (train, eval for thresholds, test for the numbers), or K-fold
cross-validation on one labeled file (each issue scored once by a model that did not see it). Every
engine goes through the same `fit_labeler` as `issuelab train`, so thresholds, the policy and the
metrics are the ones a run would have. The report itself is written by `issuelab.report`.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import Config
from .crossval import crossval_folds
from .data import Issue, read_issues
from .engines.registry import engine_class
from .errors import IssuelabError
from .labeler import Labeler, score_matrix
from .metrics import ModelMetrics, expected_calibration_error, gold_matrix, score_outputs
from .split import split_issues
from .train import train_run

LATENCY_SAMPLE = 20  # issues labeled one at a time, as the Action and the service do
TIE_MARGIN = 0.01  # micro F1 this close to the best counts as a tie, broken by latency
CURVE_FRACTIONS = (0.25, 0.5, 0.75)  # of each fold's training issues, for the learning curve (1.0: the fold itself)


@dataclass
class EngineResult:
    engine: str
    metrics: ModelMetrics
    scores: np.ndarray  # (issues, labels): test scores, or out-of-fold scores in cross-validation
    predicted: list[list[str]]
    multi_label: bool
    train_seconds: float  # per model (the mean over folds in cross-validation)
    latency_p50: float  # seconds per issue, one issue at a time, warm
    latency_p95: float
    run_bytes: int  # the run directory on disk
    shared_bytes: int  # base models the run loads from a shared cache (not copied into it)
    ece: float
    fallback_labels: list[str] = field(default_factory=list)  # too few held-out positives: at the global threshold
    # cross-validation: (training issues, micro F1 of each fold) at growing shares of the training folds
    learning_curve: list[tuple[float, list[float]]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "engine": self.engine, "micro_f1": round(self.metrics.f1, 5), "macro_f1": round(self.metrics.macro_f1, 5),
            "jaccard": round(self.metrics.jaccard, 5), "ece": round(self.ece, 5),
            "train_seconds": round(self.train_seconds, 2), "latency_p50_ms": round(self.latency_p50 * 1000, 2),
            "latency_p95_ms": round(self.latency_p95 * 1000, 2), "run_bytes": self.run_bytes,
            "shared_bytes": self.shared_bytes, "fallback_labels": self.fallback_labels,
            "learning_curve": [{"training_issues": n, "micro_f1": [round(f, 5) for f in scores]} for n, scores in self.learning_curve],
        }  # fmt: skip


@dataclass
class Comparison:
    label_names: list[str]
    gold: list[list[str]]
    results: list[EngineResult]
    method: str  # "split" or "K-fold cross-validation"
    data: dict[str, Any]
    recommended: str = ""
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method, "data": self.data, "labels": self.label_names,
            "engines": [r.summary() | {"metrics": r.metrics.to_json()} for r in self.results],
            "recommended": self.recommended, "reason": self.reason,
        }  # fmt: skip


def directory_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def measure_latency(labeler: Labeler, issues: Sequence[Issue], sample: int = LATENCY_SAMPLE) -> tuple[float, float]:
    """p50 and p95 seconds per issue, labeling one issue per call after one warm-up call."""
    chosen = list(issues[:sample])
    if not chosen:
        return 0.0, 0.0
    labeler.predict(chosen[:1])
    seconds = []
    for issue in chosen:
        started = time.perf_counter()
        labeler.predict([issue])
        seconds.append(time.perf_counter() - started)
    seconds.sort()
    return statistics.median(seconds), seconds[min(len(seconds) - 1, int(0.95 * len(seconds)))]


def _result(engine, labeler, issues, scores, predicted, train_seconds, run_dir, label_names) -> EngineResult:
    metrics = score_outputs(engine, [i.labels for i in issues], [", ".join(p) for p in predicted], label_names)
    ece = expected_calibration_error(scores, gold_matrix(issues, label_names), labeler.multi_label)
    p50, p95 = measure_latency(labeler, issues)
    shared = sum(directory_bytes(d) for d in set(labeler.engine.shared_files()) if d.exists())
    calibration = labeler.manifest.get("calibration") or {}
    return EngineResult(
        engine, metrics, scores, predicted, labeler.multi_label, train_seconds, p50, p95,
        directory_bytes(run_dir), shared, ece, calibration.get("fallback", []),
    )  # fmt: skip


def _scores_and_labels(labeler: Labeler, issues: Sequence[Issue]) -> tuple[np.ndarray, list[list[str]]]:
    predictions = labeler.predict(list(issues))
    return score_matrix(predictions, labeler.label_names), [p.labels for p in predictions]


def compare(
    config: Config,
    engines: Sequence[str],
    *,
    data: str | Path | None = None,
    train: str | Path | None = None,
    eval: str | Path | None = None,
    test: str | Path | None = None,
    folds: int = 5,
    seed: int | None = None,
    runs_dir: Path = Path("reports/compare/runs"),
    learning_curve: bool = True,
) -> Comparison:
    """`issuelab compare`: cross-validation on `data`, or `train` (thresholds on `eval`) scored on `test`."""
    for name in engines:  # before any training: a typo in the last engine must not cost the first ones' time
        engine_class(name)
    names = config.label_names
    if data:
        if train or test:
            raise IssuelabError("give either --data (cross-validation) or --train/--eval/--test (a split), not both")
        return compare_crossval(config, read_issues(data, names), engines, folds, seed, learning_curve)
    if not (train and test):
        raise IssuelabError("give --train and --test (and --eval for thresholds), or --data FILE for cross-validation")
    eval_issues = read_issues(eval, names) if eval else None
    return compare_on_split(config, read_issues(train, names), eval_issues, read_issues(test, names), engines, runs_dir)


def compare_on_split(
    config: Config, train: list[Issue], eval: list[Issue] | None, test: list[Issue], engines: Sequence[str], runs_dir: Path
) -> Comparison:
    """Trains each engine on `train` (thresholds on `eval`), writes its run under runs_dir, scores `test`."""
    if not test:
        raise IssuelabError("compare: the test data is empty")
    results = []
    for engine in engines:
        print(f"compare: training {engine} on {len(train)} issues", file=sys.stderr)
        labeler, _ = train_run(config, train, eval, runs_dir / engine, engine=engine, force=True)
        scores, predicted = _scores_and_labels(labeler, test)
        seconds = labeler.manifest["train_seconds"]
        results.append(_result(engine, labeler, test, scores, predicted, seconds, runs_dir / engine, config.label_names))
    data = {"train": len(train), "eval": len(eval or []), "test": len(test)} | data_shape(train + (eval or []), config.label_names)
    return recommend(Comparison(config.label_names, [i.labels for i in test], results, "split", data))


def compare_crossval(
    config: Config, issues: list[Issue], engines: Sequence[str], folds: int = 5, seed: int | None = None,
    learning_curve: bool = True,
) -> Comparison:
    """Out-of-fold scores for every issue, per engine; the cost columns come from the last fold's model.
    `learning_curve`: each fold's engine also trained on shares of its training issues, to show what
    more labeled issues would buy."""
    if len(issues) < folds:
        raise IssuelabError(f"compare: {len(issues)} issues cannot make {folds} folds")
    results = []
    for engine in engines:
        scores = np.zeros((len(issues), len(config.label_names)))
        predicted: list[list[str]] = [[] for _ in issues]
        seconds, curve = [], {fraction: ([], []) for fraction in (*CURVE_FRACTIONS, 1.0)} if learning_curve else {}
        for fold in crossval_folds(config, issues, engine, folds, 1, seed):
            test = [issues[i] for i in fold.test_index]
            fold_scores, fold_labels = _scores_and_labels(fold.labeler, test)
            scores[fold.test_index] = fold_scores
            for i, labels in zip(fold.test_index, fold_labels):
                predicted[i] = labels
            seconds.append(fold.fit_seconds)
            last = fold.labeler
            for fraction, (sizes, f1s) in curve.items():
                part = fold.train if fraction == 1.0 else split_issues(fold.train, [fraction, 1 - fraction], fold.seed)[0]
                labels = fold_labels if fraction == 1.0 else [p.labels for p in fold.fit(part).predict(test)]
                sizes.append(len(part))
                f1s.append(score_outputs(engine, [i.labels for i in test], [", ".join(x) for x in labels], config.label_names).f1)
        with tempfile.TemporaryDirectory() as tmp:
            last.save(Path(tmp) / "run")
            result = _result(engine, last, issues, scores, predicted, statistics.mean(seconds), Path(tmp) / "run", config.label_names)
        result.learning_curve = [(statistics.mean(sizes), f1s) for sizes, f1s in curve.values()]
        results.append(result)
    data = {"issues": len(issues), "folds": folds} | data_shape(issues, config.label_names)
    return recommend(Comparison(config.label_names, [i.labels for i in issues], results, f"{folds}-fold cross-validation", data))


def data_shape(issues: Sequence[Issue], label_names: Sequence[str]) -> dict[str, Any]:
    """What the recommendation holds for: which engine wins depends on it (single-label data with a few
    labels and many issues per label favours fine-tuned encoders; many labels with few issues each, the
    quick engines), so the report says on what kind of data it was chosen."""
    counts = [len(issue.labels) for issue in issues]
    per_label = [sum(name in issue.labels for issue in issues) for name in label_names]
    return {"labels": len(label_names), "labels_per_issue": round(statistics.mean(counts), 2) if counts else 0.0,
            "multi_label": any(n > 1 for n in counts), "median_issues_per_label": statistics.median(per_label) if per_label else 0}  # fmt: skip


def describe_shape(data: dict[str, Any]) -> str:
    kind = f"multi-label, {data['labels_per_issue']:.1f} labels per issue" if data["multi_label"] else "single-label"
    return f"{kind}, {data['labels']} labels, a median of {data['median_issues_per_label']:g} labeled issues per label"


def recommend(comparison: Comparison, margin: float = TIE_MARGIN) -> Comparison:
    """The engine with the best micro F1 (the seed's headline metric); within `margin` of it, the fastest.
    The reason names the data's shape: on another shape another engine may win."""
    best = max(comparison.results, key=lambda r: r.metrics.f1)
    close = [r for r in comparison.results if best.metrics.f1 - r.metrics.f1 <= margin]
    chosen = min(close, key=lambda r: (r.latency_p50, -r.metrics.f1))
    comparison.recommended = chosen.engine
    if chosen is best:
        comparison.reason = f"{chosen.engine} has the best micro F1 ({chosen.metrics.f1:.2%})"
        others = [r for r in close if r is not chosen]
        if others:
            comparison.reason += f" and is the fastest of those within {margin:.0%} of it"
    else:
        comparison.reason = (
            f"{chosen.engine}'s micro F1 ({chosen.metrics.f1:.2%}) is within {margin:.0%} of the best "
            f"({best.engine}, {best.metrics.f1:.2%}) and it labels an issue "
            f"{best.latency_p50 / max(chosen.latency_p50, 1e-9):.1f}x faster"
        )
    if "labels" in comparison.data:
        comparison.reason += f", on this data ({describe_shape(comparison.data)})"
    return comparison

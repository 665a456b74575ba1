"""`compare`: several engines trained and scored on the same data, with their costs, and a recommendation.

Two ways to hold data out: a split (train, eval for thresholds, test for the numbers), or K-fold
cross-validation on one labeled file (each issue scored once by a model that did not see it). Every
engine goes through the same `fit_labeler` as `issuelab train`, so thresholds, the policy and the
metrics are the ones a run would have. The report itself is written by `issuelab.report`.
"""

from __future__ import annotations

import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import Config, load_config
from .data import Issue
from .errors import ConfigError, IssuelabError
from .evaluate import ModelMetrics, expected_calibration_error, score_outputs
from .labeler import Labeler, gold_matrix

LATENCY_SAMPLE = 20  # issues labeled one at a time, as the Action and the service do
TIE_MARGIN = 0.01  # micro F1 this close to the best counts as a tie, broken by latency


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
    fallback_labels: list[str] = field(default_factory=list)  # thresholds left at the default

    def summary(self) -> dict[str, Any]:
        return {
            "engine": self.engine, "micro_f1": round(self.metrics.f1, 5), "macro_f1": round(self.metrics.macro_f1, 5),
            "jaccard": round(self.metrics.jaccard, 5), "ece": round(self.ece, 5),
            "train_seconds": round(self.train_seconds, 2), "latency_p50_ms": round(self.latency_p50 * 1000, 2),
            "latency_p95_ms": round(self.latency_p95 * 1000, 2), "run_bytes": self.run_bytes,
            "shared_bytes": self.shared_bytes, "fallback_labels": self.fallback_labels,
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


def shared_model_dirs(engine: Any) -> set[Path]:
    """Model files a run loads from outside its directory: the LLM base, a frozen encoder."""
    if hasattr(engine, "members"):
        return set().union(*(shared_model_dirs(m) for m in engine.members))
    dirs = set()
    base = (getattr(engine, "info", None) or {}).get("base_model")
    if isinstance(base, dict) and base.get("path"):
        dirs.add(Path(base["path"]))
    if engine.name == "embed" and not engine.finetuned:
        from .engines.embed import model_path

        dirs.add(model_path(engine.options.model))
    return dirs


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
    shared = sum(directory_bytes(d) for d in shared_model_dirs(labeler.engine) if d.exists())
    calibration = labeler.manifest.get("calibration") or {}
    return EngineResult(
        engine, metrics, scores, predicted, labeler.multi_label, train_seconds, p50, p95,
        directory_bytes(run_dir), shared, ece, calibration.get("fallback", []),
    )  # fmt: skip


def _scores_and_labels(labeler: Labeler, issues: Sequence[Issue]) -> tuple[np.ndarray, list[list[str]]]:
    predictions = labeler.predict(list(issues))
    scores = np.array([[p.scores[name] for name in labeler.label_names] for p in predictions], dtype=float)
    return scores.reshape(len(issues), len(labeler.label_names)), [p.labels for p in predictions]


def compare_on_split(
    config: Config, train: list[Issue], eval: list[Issue] | None, test: list[Issue], engines: Sequence[str], runs_dir: Path
) -> Comparison:
    """Trains each engine on `train` (thresholds on `eval`), writes its run under runs_dir, scores `test`."""
    from .train import train_run

    if not test:
        raise IssuelabError("compare: the test data is empty")
    results = []
    for engine in engines:
        print(f"compare: training {engine} on {len(train)} issues", file=sys.stderr)
        labeler, _ = train_run(config, train, eval, runs_dir / engine, engine=engine, force=True)
        scores, predicted = _scores_and_labels(labeler, test)
        seconds = labeler.manifest["train_seconds"]
        results.append(_result(engine, labeler, test, scores, predicted, seconds, runs_dir / engine, config.label_names))
    data = {"train": len(train), "eval": len(eval or []), "test": len(test)}
    return recommend(Comparison(config.label_names, [i.labels for i in test], results, "split", data))


def compare_crossval(
    config: Config, issues: list[Issue], engines: Sequence[str], folds: int = 5, seed: int | None = None
) -> Comparison:
    """Out-of-fold scores for every issue, per engine; the cost columns come from the last fold's model."""
    from .crossval import crossval_folds

    if len(issues) < folds:
        raise IssuelabError(f"compare: {len(issues)} issues cannot make {folds} folds")
    results = []
    for engine in engines:
        scores = np.zeros((len(issues), len(config.label_names)))
        predicted: list[list[str]] = [[] for _ in issues]
        seconds = []
        for fold in crossval_folds(config, issues, engine, folds, 1, seed):
            fold_scores, fold_labels = _scores_and_labels(fold.labeler, [issues[i] for i in fold.test_index])
            scores[fold.test_index] = fold_scores
            for i, labels in zip(fold.test_index, fold_labels):
                predicted[i] = labels
            seconds.append(fold.fit_seconds)
            last = fold.labeler
        with tempfile.TemporaryDirectory() as tmp:
            last.save(Path(tmp) / "run")
            results.append(_result(engine, last, issues, scores, predicted, statistics.mean(seconds), Path(tmp) / "run", config.label_names))
    data = {"issues": len(issues), "folds": folds}
    return recommend(Comparison(config.label_names, [i.labels for i in issues], results, f"{folds}-fold cross-validation", data))


def recommend(comparison: Comparison, margin: float = TIE_MARGIN) -> Comparison:
    """The engine with the best micro F1 (the seed's headline metric); within `margin` of it, the fastest."""
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
    return comparison


def set_config_engine(path: str | Path, engine: str) -> None:
    """Sets `engine` in the [train] section of an issuelab.toml, keeping every other line and comment."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such config to write the engine into (create it with `issuelab init`)")
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    setting = f'engine = "{engine}"\n'
    section, header_at, done = None, None, False
    for k, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped.split("#")[0].strip()
            if section == "[train]":
                header_at = k
            continue
        if section == "[train]" and re.match(r"engine\s*=", stripped):
            comment = line[line.index("#") :] if "#" in line.split("=", 1)[1] else ""
            lines[k] = f'engine = "{engine}"' + (f"  {comment.rstrip()}\n" if comment else "\n")
            done = True
            break
    if not done and header_at is not None:
        lines.insert(header_at + 1, setting)
    elif not done:
        lines.append(("\n" if lines and lines[-1].strip() else "") + "[train]\n" + setting)
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text("".join(lines), encoding="utf-8")
    try:
        if load_config(staging).train.engine != engine:
            raise ConfigError(f"{path}: could not set [train] engine (left unchanged)")
    except Exception:
        staging.unlink()
        raise
    os.replace(staging, path)

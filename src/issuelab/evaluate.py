"""`evaluate`: score a run, a predictions file or a base model on labeled issues, by the seed's rules
(`issuelab.metrics`), so that every model lands in the same table."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import Config
from .data import Issue, read_issues
from .labeler import Labeler, prediction_records, score_matrix
from .metrics import ModelMetrics, expected_calibration_error, gold_matrix, score_outputs, score_predictions


def evaluate_predictions(name: str, path: str | Path, label_names: Sequence[str]) -> ModelMetrics:
    """A predictions JSONL (gold `labels` and a raw `output` per issue), from any model."""
    return score_predictions(name, read_issues(path, label_names), label_names, source=str(path))


def evaluate_run(labeler: Labeler, issues: Sequence[Issue], name: str, unconstrained: bool = False) -> tuple[ModelMetrics, list[dict[str, Any]]]:
    """A run's metrics on `issues`, with the expected calibration error of its scores, and its predictions
    records. `unconstrained`: a generative run's raw answers, scored as the seed scored its model
    (invalid outputs and all; no scores, no calibration)."""
    if unconstrained:
        outputs = labeler.generate(issues)
        records = [dict(issue.to_dict(), output=output) for issue, output in zip(issues, outputs)]
        return score_outputs(name, [i.labels for i in issues], outputs, labeler.label_names), records
    predictions = labeler.predict(issues, progress=True)
    metrics = score_outputs(name, [i.labels for i in issues], [p.output for p in predictions], labeler.label_names)
    metrics.ece = expected_calibration_error(score_matrix(predictions, labeler.label_names),
                                             gold_matrix(issues, labeler.label_names), labeler.multi_label)  # fmt: skip
    return metrics, prediction_records(issues, predictions)


def evaluate_base_model(config: Config, issues: Sequence[Issue], base_model: str) -> ModelMetrics:
    """The seed's "base model" column: a base LLM zero-shot and unconstrained, with the config's prompt."""
    from .llm.zero_shot import base_model_outputs  # needs the 'lora' extra

    outputs = base_model_outputs(config.prompt.template, config.label_pairs, issues, base_model)
    return score_outputs("base model", [i.labels for i in issues], outputs, config.label_names)

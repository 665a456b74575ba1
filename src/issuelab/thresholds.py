"""Per-label thresholds, chosen on held-out scores, and the record of how each was set.

Applying a threshold is `issuelab.policy`'s business alone; this module only chooses them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .metrics import expected_calibration_error, f1, micro_f1

MIN_POSITIVES_TO_TUNE = 3  # fewer held-out positives than this: a label takes the global threshold


def calibration_report(
    scores: np.ndarray, gold: np.ndarray, label_names: Sequence[str], thresholds: dict[str, float], multi_label: bool,
    source: str, chosen: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """How each label's threshold was set and on what (`source`: "out-of-fold (5 folds)" or "eval split"),
    with the expected calibration error of the scores it was set on. Methods: "argmax" (single-label),
    "shrunk" / "global" (`held_out_thresholds`: a label with too few positives takes the global threshold)."""
    positives = {label: int(gold[:, k].sum()) for k, label in enumerate(label_names)}
    # single-label: the argmax decides and thresholds are not used; multi-label: `chosen` says how each was set
    method = chosen["methods"] if multi_label else {label: "argmax" for label in label_names}
    report = {
        "source": source,
        "issues": int(len(gold)),
        "ece": round(expected_calibration_error(scores, gold, multi_label), 5),
        "labels": {label: {"threshold": round(thresholds[label], 5), "method": method[label], "positives": positives[label]}
                   for label in label_names},
        "fallback": sorted(label for label in label_names if method[label] == "global"),
    }  # fmt: skip
    if multi_label:
        report["global_threshold"] = chosen["global_threshold"]
    return report


def with_description_thresholds(
    thresholds: dict[str, float], calibration: dict[str, Any] | None, described: dict[str, float]
) -> tuple[dict[str, float], dict[str, Any]]:
    """Labels that no training issue carries, scored from their description alone (`fewshot`), take the
    engine's thresholds for them (method "description"); with no labeled issue at all, every label does."""
    calibration = dict(calibration or {"source": "zero-shot (no labeled issues)", "issues": 0, "labels": {}, "fallback": []})
    calibration["labels"] = calibration["labels"] | {
        label: {"threshold": threshold, "method": "description", "positives": 0} for label, threshold in described.items()
    }
    calibration["fallback"] = [label for label in calibration["fallback"] if label not in described]
    return thresholds | described, calibration


THRESHOLD_GRID = np.round(np.arange(0.02, 0.99, 0.02), 2)
# A label's own best threshold counts as much as the global one at this many positives. Per-label F1
# maxima overfit the out-of-fold scores: at 10, the 'full' protocol (1,100-1,350 training issues) scored
# 0.010-0.032 micro F1 below one global threshold; at 100 it is level with it there and with 10 at 'small'
# (docs/benchmarks.md, "Thresholds nearer the global one").
SHRINK_STRENGTH = 100


def held_out_thresholds(
    scores: np.ndarray, gold: np.ndarray, label_names: Sequence[str], min_labels: int, max_labels: int
) -> tuple[dict[str, float], dict[str, Any]]:
    """Thresholds from held-out scores: out of fold (every training issue scored by a model that did not
    see it) or the eval split's.

    One global threshold maximises micro F1 under the policy's rule (`min_labels`, `max_labels`); each
    label's own best threshold is then shrunk toward it by how much evidence the label has:
    t = (n * own + SHRINK_STRENGTH * global) / (n + SHRINK_STRENGTH) for a label with n positives, and a
    label with fewer than MIN_POSITIVES_TO_TUNE positives keeps the global threshold.
    Returns the thresholds and a report (the global threshold, each label's method and positives)."""
    from .policy import label_matrix

    def micro_at(thresholds) -> float:
        return micro_f1(label_matrix(scores, thresholds, True, min_labels, max_labels), gold)

    # First maximum over the grid: ties go to the lowest threshold that reaches it.
    global_threshold = float(max(THRESHOLD_GRID, key=micro_at))
    thresholds, methods, positives = {}, {}, {}
    for k, label in enumerate(label_names):
        n = positives[label] = int(gold[:, k].sum())
        if n < MIN_POSITIVES_TO_TUNE:
            thresholds[label], methods[label] = global_threshold, "global"
            continue
        column = scores[:, k]
        own = max(THRESHOLD_GRID, key=lambda t: (f1(int(((column >= t) & gold[:, k]).sum()), int((column >= t).sum()), n), -abs(t - global_threshold)))
        thresholds[label] = round(float((n * own + SHRINK_STRENGTH * global_threshold) / (n + SHRINK_STRENGTH)), 5)
        methods[label] = "shrunk"
    report = {"global_threshold": global_threshold, "micro_f1_global": round(micro_at(global_threshold), 5),
              "methods": methods, "positives": positives}  # fmt: skip
    return thresholds, report


NEVER = 1.01  # an apply threshold no score reaches (scores are at most 1): the label is never added
MIN_PREDICTIONS_FOR_PRECISION = 3  # fewer held-out predictions than this measure no precision


def precision_thresholds(scores: np.ndarray, gold: np.ndarray, label_names: Sequence[str], target: float) -> tuple[dict[str, float], list[str]]:
    """Per label, the lowest threshold of the grid at which the label's precision on (scores, gold) reaches
    `target` with at least MIN_PREDICTIONS_FOR_PRECISION predictions: the most issues labeled at that
    precision. A label that reaches it nowhere gets NEVER. Returns the thresholds and those labels."""
    thresholds, unreachable = {}, []
    for k, label in enumerate(label_names):
        column, positive = scores[:, k], gold[:, k].astype(bool)
        thresholds[label] = NEVER
        for t in THRESHOLD_GRID:
            predicted = column >= t
            if predicted.sum() < MIN_PREDICTIONS_FOR_PRECISION:
                break
            if (predicted & positive).sum() / predicted.sum() >= target:
                thresholds[label] = float(t)
                break
        if thresholds[label] == NEVER:
            unreachable.append(label)
    return thresholds, unreachable

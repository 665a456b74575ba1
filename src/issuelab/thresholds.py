"""Per-label thresholds, tuned on held-out scores, and the record of how each was set.

Applying a threshold is `issuelab.policy`'s business alone; this module only chooses them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .metrics import expected_calibration_error, f1
from .policy import DEFAULT_THRESHOLD

MIN_POSITIVES_TO_TUNE = 3  # fewer eval positives than this: keep the default threshold


def tune_thresholds(scores: np.ndarray, gold: np.ndarray, label_names: Sequence[str]) -> dict[str, float]:
    """Per label, the threshold maximising F1 on (scores, gold); midway between the chosen and next score."""
    thresholds = {}
    for k, label in enumerate(label_names):
        positives = int(gold[:, k].sum())
        if positives < MIN_POSITIVES_TO_TUNE:
            thresholds[label] = DEFAULT_THRESHOLD
            continue
        order = np.argsort(-scores[:, k], kind="stable")
        ranked, hits = scores[order, k], np.cumsum(gold[order, k])
        predicted = np.arange(1, len(ranked) + 1)
        best = int(np.argmax(f1(hits, predicted, positives)))  # first maximum: the fewest predictions reaching it
        below = ranked[best + 1] if best + 1 < len(ranked) else 0.0
        thresholds[label] = float((ranked[best] + below) / 2)
    return thresholds


def calibration_report(
    scores: np.ndarray, gold: np.ndarray, label_names: Sequence[str], thresholds: dict[str, float], multi_label: bool
) -> dict[str, Any]:
    """How each label's threshold was set (tuned on eval, or the default for a label with too few eval
    positives) and the expected calibration error of the scores on eval."""
    positives = {label: int(gold[:, k].sum()) for k, label in enumerate(label_names)}
    if not multi_label:  # the argmax decides; thresholds are not used
        method = {label: "argmax" for label in label_names}
    else:
        method = {label: "tuned" if positives[label] >= MIN_POSITIVES_TO_TUNE else "default" for label in label_names}
    return {
        "eval_issues": int(len(gold)),
        "ece": round(expected_calibration_error(scores, gold, multi_label), 5),
        "labels": {label: {"threshold": round(thresholds[label], 5), "method": method[label], "eval_positives": positives[label]}
                   for label in label_names},
        "fallback": sorted(label for label in label_names if method[label] == "default"),
    }  # fmt: skip

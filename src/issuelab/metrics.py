"""The seed's metrics, exactly, plus what its table leaves out; the one F1 and the one gold matrix.

- An output is invalid when it is empty or blank, contains a newline, a backtick, [, ], { or },
  or is longer than 200 characters. Invalid outputs are counted and left out of every other metric.
- Parsing: split on commas, strip, lower-case, keep tokens in the label set, as a set. Outputs with
  a token outside the set are counted as out-of-set.
- Over valid examples: micro Jaccard = sum|gold & pred| / sum|gold | pred|, precision = sum|&| /
  sum|pred|, recall = sum|&| / sum|gold|, F1 = 2PR / (P + R). Also labels per example, per-label
  precision / recall / F1 / support, and macro F1 over labels that occur in gold or predictions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .data import Issue
from .errors import DataError

MAX_OUTPUT_CHARS = 200
_FORBIDDEN = ("\n", "\r", "`", "[", "]", "{", "}")


def is_invalid(output: str | None) -> bool:
    if output is None or not output.strip():
        return True
    return len(output) > MAX_OUTPUT_CHARS or any(ch in output for ch in _FORBIDDEN)


def parse_output(output: str, lookup: dict[str, str]) -> tuple[set[str], bool]:
    """Returns (labels in the set, whether any token fell outside it). `lookup`: lower-case -> name."""
    labels, out_of_set = set(), False
    for token in output.split(","):
        token = token.strip().lower()
        if not token:
            continue
        if token in lookup:
            labels.add(lookup[token])
        else:
            out_of_set = True
    return labels, out_of_set


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def f1(tp, predicted, gold):
    """F1 from counts: 2PR / (P + R), computed as 2 tp / (predicted + gold) (one division, so F1s that
    are equal fractions compare equal, and the first of tied thresholds wins); 0 where both counts are 0.
    Takes numbers or numpy arrays (elementwise)."""
    if any(isinstance(x, np.ndarray) for x in (tp, predicted, gold)):
        den = np.asarray(predicted + gold, dtype=float)
        return np.divide(2 * np.asarray(tp, dtype=float), den, out=np.zeros_like(den), where=den > 0)
    den = predicted + gold
    return 2 * tp / den if den else 0.0


def micro_f1(predicted: np.ndarray, gold: np.ndarray) -> float:
    """Micro F1 of two (issues, labels) boolean matrices."""
    return float(f1(int((predicted & gold).sum()), int(predicted.sum()), int(gold.sum())))


@dataclass
class LabelCounts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def support(self) -> int:
        return self.tp + self.fn

    @property
    def precision(self) -> float:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        return f1(self.tp, self.tp + self.fp, self.tp + self.fn)


@dataclass
class ModelMetrics:
    """Micro counts; adding two (e.g. cross-validation folds) sums them."""

    name: str
    labels: list[str]
    examples: int = 0
    invalid: int = 0
    out_of_set: int = 0
    intersection: int = 0
    union: int = 0
    predicted: int = 0
    gold: int = 0
    per_label: dict[str, LabelCounts] = field(default_factory=dict)
    ece: float | None = None  # expected calibration error of the scores, when a model gave scores

    def __post_init__(self) -> None:
        for label in self.labels:
            self.per_label.setdefault(label, LabelCounts())

    @property
    def valid(self) -> int:
        return self.examples - self.invalid

    @property
    def jaccard(self) -> float:
        return _ratio(self.intersection, self.union)

    @property
    def precision(self) -> float:
        return _ratio(self.intersection, self.predicted)

    @property
    def recall(self) -> float:
        return _ratio(self.intersection, self.gold)

    @property
    def f1(self) -> float:
        return f1(self.intersection, self.predicted, self.gold)

    @property
    def labels_per_example(self) -> float:
        return _ratio(self.predicted, self.valid)

    @property
    def macro_f1(self) -> float:
        scored = [c.f1 for c in self.per_label.values() if c.support or c.fp]
        return sum(scored) / len(scored) if scored else 0.0

    def add(self, gold: set[str], output: str | None, lookup: dict[str, str]) -> None:
        self.examples += 1
        if is_invalid(output):
            self.invalid += 1
            return
        pred, out_of_set = parse_output(output, lookup)
        self.out_of_set += out_of_set
        self.intersection += len(gold & pred)
        self.union += len(gold | pred)
        self.predicted += len(pred)
        self.gold += len(gold)
        for label in gold | pred:
            counts = self.per_label[label]
            if label in gold and label in pred:
                counts.tp += 1
            elif label in pred:
                counts.fp += 1
            else:
                counts.fn += 1

    def merge(self, other: ModelMetrics) -> None:
        for key in ("examples", "invalid", "out_of_set", "intersection", "union", "predicted", "gold"):
            setattr(self, key, getattr(self, key) + getattr(other, key))
        for label, counts in other.per_label.items():
            mine = self.per_label.setdefault(label, LabelCounts())
            mine.tp, mine.fp, mine.fn = mine.tp + counts.tp, mine.fp + counts.fp, mine.fn + counts.fn

    def to_json(self) -> dict[str, Any]:
        def frac(num: int, den: int) -> dict[str, Any]:
            return {"num": num, "den": den, "value": round(_ratio(num, den), 5)}

        return {
            "name": self.name,
            "examples": self.examples,
            "invalid": self.invalid,
            "out_of_set": self.out_of_set,
            "jaccard": frac(self.intersection, self.union),
            "precision": frac(self.intersection, self.predicted),
            "recall": frac(self.intersection, self.gold),
            "f1": {"value": round(self.f1, 5)},
            "macro_f1": round(self.macro_f1, 5),
            "labels_per_example": round(self.labels_per_example, 2),
            "per_label": {
                label: {
                    "precision": round(c.precision, 5),
                    "recall": round(c.recall, 5),
                    "f1": round(c.f1, 5),
                    "support": c.support,
                }
                for label, c in self.per_label.items()
            },
        } | ({"ece": round(self.ece, 5)} if self.ece is not None else {})


def expected_calibration_error(scores, gold, multi_label: bool, bins: int = 10) -> float:
    """How far scores are from observed frequencies: the bin-weighted mean |accuracy - confidence| over
    `bins` equal-width confidence bins. Single-label: the top label's score against whether it is right;
    multi-label: every (issue, label) score against whether the label is gold."""
    scores, gold = np.asarray(scores, dtype=float), np.asarray(gold, dtype=bool)
    if multi_label:
        confidence, correct = scores.ravel(), gold.ravel()
    else:
        top = scores.argmax(axis=1)
        confidence, correct = scores[np.arange(len(scores)), top], gold[np.arange(len(scores)), top]
    if confidence.size == 0:
        return 0.0
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    error = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            error += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(error)


def label_lookup(label_names: Sequence[str]) -> dict[str, str]:
    return {name.lower(): name for name in label_names}


def score_outputs(
    name: str, golds: Sequence[Sequence[str]], outputs: Sequence[str | None], label_names: Sequence[str]
) -> ModelMetrics:
    lookup = label_lookup(label_names)
    metrics = ModelMetrics(name, list(label_names))
    for gold, output in zip(golds, outputs, strict=True):
        metrics.add(set(gold), output, lookup)
    return metrics


def score_predictions(name: str, records: Sequence[Issue], label_names: Sequence[str], source: str = "") -> ModelMetrics:
    """Scores records holding gold `labels` and a raw `output` (the predictions JSONL format)."""
    for record in records:
        if "output" not in record.extra:
            raise DataError(
                f"{source or name}: issue id {record.id}: field 'output' is missing; "
                "a predictions file holds the dataset fields plus the model's raw 'output'"
            )
        output = record.extra["output"]
        if output is not None and not isinstance(output, str):
            raise DataError(f"{source or name}: issue id {record.id}: field 'output': expected a string or null")
    return score_outputs(name, [r.labels for r in records], [r.extra["output"] for r in records], label_names)


def metrics_json(models: Sequence[ModelMetrics], **extra: Any) -> dict[str, Any]:
    return {"models": [m.to_json() for m in models], **extra}


def multi_hot(label_sets: Sequence[Sequence[str]], label_names: Sequence[str]) -> np.ndarray:
    """(rows, labels) booleans: which of `label_names` each row's labels hold (others are ignored)."""
    index = {name: k for k, name in enumerate(label_names)}
    matrix = np.zeros((len(label_sets), len(label_names)), dtype=bool)
    for row, labels in enumerate(label_sets):
        for label in labels:
            if label in index:
                matrix[row, index[label]] = True
    return matrix


def gold_matrix(issues: Sequence[Issue], label_names: Sequence[str]) -> np.ndarray:
    """(issues, labels) booleans: which labels each issue carries. `.astype(np.float32)` is the
    multi-hot target of networks trained on it."""
    return multi_hot([issue.labels for issue in issues], label_names)

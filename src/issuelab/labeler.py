"""A trained run: engine scores -> labels, through per-label thresholds and the label policy.

Run directory layout (everything needed to predict, nothing pickled):

    manifest.json    engine, options, multi_label, policy, versions, data hashes, seed, eval metrics
    labels.json      [{"name": ..., "description": ...}] in prompt order
    prompt.txt       the prompt template
    thresholds.json  {"label": threshold}
    model/           the engine's own files
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import PolicyConfig
from .data import Issue
from .engines import Engine, engine_class
from .errors import IssuelabError

DEFAULT_THRESHOLD = 0.5
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
        f1 = 2 * hits / (predicted + positives)
        best = int(np.argmax(f1))  # first maximum: the fewest predictions reaching it
        below = ranked[best + 1] if best + 1 < len(ranked) else 0.0
        thresholds[label] = float((ranked[best] + below) / 2)
    return thresholds


def calibration_report(
    scores: np.ndarray, gold: np.ndarray, label_names: Sequence[str], thresholds: dict[str, float], multi_label: bool
) -> dict[str, Any]:
    """How each label's threshold was set (tuned on eval, or the default for a label with too few eval
    positives) and the expected calibration error of the scores on eval."""
    from .evaluate import expected_calibration_error

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


def gold_matrix(issues: Sequence[Issue], label_names: Sequence[str]) -> np.ndarray:
    index = {name: k for k, name in enumerate(label_names)}
    gold = np.zeros((len(issues), len(label_names)), dtype=bool)
    for row, issue in enumerate(issues):
        for label in issue.labels:
            gold[row, index[label]] = True
    return gold


@dataclass
class Prediction:
    labels: list[str]
    scores: dict[str, float]

    @property
    def output(self) -> str:
        return ", ".join(self.labels)


def choose_labels(
    scores: np.ndarray, label_names: Sequence[str], thresholds: Sequence[float], multi_label: bool, policy: PolicyConfig
) -> list[str]:
    """Single-label: the argmax. Multi-label: scores at or above their threshold, highest first,
    at most policy.max_labels; if fewer than policy.min_labels pass, the top ones fill in."""
    order = np.argsort(-scores, kind="stable")
    if not multi_label:
        return [label_names[order[0]]]
    chosen = [k for k in order if scores[k] >= thresholds[k]]
    if policy.max_labels:
        chosen = chosen[: policy.max_labels]
    for k in order:
        if len(chosen) >= policy.min_labels:
            break
        if k not in chosen:
            chosen.append(k)
    return [label_names[k] for k in chosen]


class Labeler:
    def __init__(
        self,
        engine: Engine,
        labels: list[dict[str, str]],
        thresholds: dict[str, float],
        multi_label: bool,
        policy: PolicyConfig,
        prompt: str = "",
        manifest: dict[str, Any] | None = None,
    ):
        self.engine = engine
        self.labels = labels
        self.label_names = [label["name"] for label in labels]
        self.thresholds = thresholds
        self._threshold_array = np.array([thresholds.get(n, DEFAULT_THRESHOLD) for n in self.label_names])
        self.multi_label = multi_label
        self.policy = policy
        self.prompt = prompt
        self.manifest = manifest or {}

    def predict(self, issues: Sequence[Issue], batch_size: int = 256, progress: bool = False) -> list[Prediction]:
        from tqdm.auto import tqdm

        predictions = []
        bar = tqdm(total=len(issues), desc="predicting", unit="issue", disable=None if progress else True, leave=False)  # None: off when not a TTY
        for start in range(0, len(issues), batch_size):
            batch = list(issues[start : start + batch_size])
            for row in self.engine.predict_scores(batch):
                labels = choose_labels(row, self.label_names, self._threshold_array, self.multi_label, self.policy)
                scores = {name: round(float(s), 5) for name, s in zip(self.label_names, row)}
                predictions.append(Prediction(labels, scores))
            bar.update(len(batch))
        bar.close()
        return predictions

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.engine.save(directory / "model")
        _write(directory / "labels.json", self.labels)
        _write(directory / "thresholds.json", self.thresholds)
        (directory / "prompt.txt").write_text(self.prompt, encoding="utf-8")
        manifest = dict(self.manifest, multi_label=self.multi_label, policy=asdict(self.policy))
        _write(directory / "manifest.json", manifest)

    @property
    def aliases(self) -> dict[str, str]:
        """Other spellings of the run's labels ([aliases] of the config it was trained with)."""
        return self.manifest.get("aliases", {})

    @staticmethod
    def read_manifest(directory: str | Path) -> dict[str, Any]:
        path = Path(directory) / "manifest.json"
        if not path.exists():
            raise IssuelabError(f"{directory}: not a run directory (no manifest.json); create one with `issuelab train`")
        return json.loads(path.read_text(encoding="utf-8"))

    @staticmethod
    def load_policy(directory: str | Path) -> PolicyConfig:
        """The policy recorded in a run, without loading its model."""
        return PolicyConfig(**Labeler.read_manifest(directory)["policy"])

    @classmethod
    def load(cls, directory: str | Path) -> Labeler:
        directory = Path(directory)
        manifest = cls.read_manifest(directory)
        engine = engine_class(manifest["engine"]).load(directory / "model")
        return cls(
            engine=engine,
            labels=json.loads((directory / "labels.json").read_text(encoding="utf-8")),
            thresholds=json.loads((directory / "thresholds.json").read_text(encoding="utf-8")),
            multi_label=manifest["multi_label"],
            policy=PolicyConfig(**manifest["policy"]),
            prompt=(directory / "prompt.txt").read_text(encoding="utf-8"),
            manifest=manifest,
        )


def _write(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def prediction_records(issues: Sequence[Issue], predictions: Sequence[Prediction]) -> list[dict[str, Any]]:
    """The predictions JSONL rows: the dataset fields plus output and scores."""
    return [
        dict(issue.to_dict(), output=p.output, scores=p.scores) for issue, p in zip(issues, predictions, strict=True)
    ]

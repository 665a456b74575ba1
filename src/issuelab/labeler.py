"""A trained run at work: its engine's scores, and the labels the policy chooses from them.

Run directory layout (everything needed to predict, nothing pickled):

    manifest.json    engine, options, multi_label, policy, versions, data hashes, seed, eval metrics
    labels.json      [{"name": ..., "description": ...}] in prompt order
    prompt.txt       the prompt template
    thresholds.json  {"label": threshold}
    model/           the engine's own files
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .data import Issue, write_json
from .engines import Engine
from .engines.registry import engine_class
from .errors import IssuelabError
from .policy import PolicyConfig, choose_labels, threshold_array


@dataclass
class Prediction:
    labels: list[str]
    scores: dict[str, float]

    @property
    def output(self) -> str:
        return ", ".join(self.labels)


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
        self.threshold_array = threshold_array(thresholds, self.label_names)
        self.multi_label = multi_label
        self.policy = policy
        self.prompt = prompt
        self.manifest = manifest or {}

    def _score_rows(self, issues: Sequence[Issue], batch_size: int, progress: bool) -> Iterator[np.ndarray]:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(issues), desc="predicting", unit="issue", disable=None if progress else True, leave=False)  # None: off when not a TTY
        for start in range(0, len(issues), batch_size):
            batch = list(issues[start : start + batch_size])
            yield from self.engine.predict_scores(batch)
            bar.update(len(batch))
        bar.close()

    def _score_dict(self, row: np.ndarray) -> dict[str, float]:
        return {name: round(float(s), 5) for name, s in zip(self.label_names, row)}

    def scores(self, issues: Sequence[Issue], batch_size: int = 256, progress: bool = False) -> list[dict[str, float]]:
        """Each issue's score per label, as the GitHub side hands them to `policy.decide`."""
        return [self._score_dict(row) for row in self._score_rows(issues, batch_size, progress)]

    def predict(self, issues: Sequence[Issue], batch_size: int = 256, progress: bool = False) -> list[Prediction]:
        """Each issue's scores and the labels the run's own policy chooses from them."""
        return [
            Prediction(choose_labels(row, self.label_names, self.threshold_array, self.multi_label, self.policy), self._score_dict(row))
            for row in self._score_rows(issues, batch_size, progress)
        ]

    def generate(self, issues: Sequence[Issue]) -> list[str]:
        """A generative engine's raw, unconstrained answers (the seed's way of running its model)."""
        if not self.engine.generative:
            raise IssuelabError(f"--unconstrained applies to generative engines (lora), not {self.manifest['engine']}")
        return self.engine.generate(list(issues), constrained=False)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.engine.save(directory / "model")
        write_json(directory / "labels.json", self.labels)
        write_json(directory / "thresholds.json", self.thresholds)
        (directory / "prompt.txt").write_text(self.prompt, encoding="utf-8")
        write_json(directory / "manifest.json", dict(self.manifest, multi_label=self.multi_label, policy=asdict(self.policy)))

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


def prediction_records(issues: Sequence[Issue], predictions: Sequence[Prediction]) -> list[dict[str, Any]]:
    """The predictions JSONL rows: the dataset fields plus output and scores."""
    return [
        dict(issue.to_dict(), output=p.output, scores=p.scores) for issue, p in zip(issues, predictions, strict=True)
    ]


def score_matrix(predictions: Sequence[Prediction], label_names: Sequence[str]) -> np.ndarray:
    """(issues, labels) scores of predictions, in label order."""
    return np.array([[p.scores[name] for name in label_names] for p in predictions], dtype=float).reshape(len(predictions), len(label_names))

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
import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .data import Issue, write_json
from .engines import Engine
from .engines.registry import engine_class
from .errors import IssuelabError, RunError
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
            Prediction(choose_labels(row, self.label_names, self.threshold_array, self.multi_label, self.policy) if has_text(issue) else [],
                       self._score_dict(row))  # an issue with no title and no body says nothing: no label
            for issue, row in zip(issues, self._score_rows(issues, batch_size, progress), strict=True)
        ]

    def explain(self, issue: Issue, labels: Sequence[str], top: int = 3) -> dict[str, list[str]]:
        """Per label, the evidence the engine can give for it (terms, similar labeled issues, the
        description it matched); an engine that gives scores only says so."""
        if not hasattr(self.engine, "explain"):
            return {label: [f"the {self.manifest.get('engine', 'run')} engine gives scores, not evidence"] for label in labels}
        return self.engine.explain(issue, list(labels), list(self.label_names), top)

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
        directory = restore_interrupted(Path(directory))
        if not (directory / "manifest.json").exists():
            raise RunError(f"{directory}: not a run directory (no manifest.json); create one with `issuelab train`")
        manifest = _run_json(directory / "manifest.json", dict)
        for key, kind in (("engine", str), ("multi_label", bool), ("policy", dict)):
            if not isinstance(manifest.get(key), kind):
                raise RunError(f"{directory / 'manifest.json'}: field {key!r} is missing or not a {kind.__name__}; {RETRAIN}")
        return manifest

    @staticmethod
    def load_policy(directory: str | Path) -> PolicyConfig:
        """The policy recorded in a run, without loading its model."""
        return _policy(Labeler.read_manifest(directory), Path(directory))

    @classmethod
    def load(cls, directory: str | Path) -> Labeler:
        """Loads a run and checks it: the files are there and agree, and the model answers one finite
        score per label. A damaged run raises RunError naming the file, never a traceback."""
        directory = Path(directory)
        manifest = cls.read_manifest(directory)
        labels = _run_json(directory / "labels.json", list)
        names = [label.get("name") if isinstance(label, dict) else None for label in labels]
        if not names or not all(isinstance(name, str) and name for name in names) or len(set(names)) != len(names):
            raise RunError(f"{directory / 'labels.json'}: expected a list of labels with distinct names; {RETRAIN}")
        if manifest.get("labels", names) != names:
            raise RunError(f"{directory}: labels.json and manifest.json name different labels; {RETRAIN}")
        thresholds = _run_json(directory / "thresholds.json", dict)
        bad = [name for name, t in thresholds.items() if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t)]
        if bad:
            raise RunError(f"{directory / 'thresholds.json'}: thresholds that are not numbers: {', '.join(map(repr, bad))}; {RETRAIN}")
        try:
            prompt = (directory / "prompt.txt").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise RunError(f"{directory / 'prompt.txt'}: cannot be read ({e}); {RETRAIN}") from None
        try:
            engine = engine_class(manifest["engine"]).load(directory / "model")
        except IssuelabError:
            raise
        except Exception as e:  # any failure here means the model files are damaged or from elsewhere
            raise RunError(f"{directory / 'model'}: the {manifest['engine']} model cannot be loaded ({type(e).__name__}: {e}); {RETRAIN}") from None
        labeler = cls(engine, labels, thresholds, manifest["multi_label"], _policy(manifest, directory), prompt, manifest)
        labeler._check_answers(directory)
        return labeler

    def _check_answers(self, directory: Path) -> None:
        try:
            scores = np.asarray(list(self.engine.predict_scores([Issue("probe", "probe", "a run loading check")])), dtype=float)
        except Exception as e:
            raise RunError(f"{directory / 'model'}: the model fails on a test issue ({type(e).__name__}: {e}); {RETRAIN}") from None
        if scores.shape != (1, len(self.label_names)) or not np.isfinite(scores).all():
            raise RunError(f"{directory / 'model'}: the model gives {scores.shape[-1] if scores.ndim == 2 else 'no'} scores for "
                           f"{len(self.label_names)} labels (or non-finite ones); {RETRAIN}")  # fmt: skip


def has_text(issue: Issue) -> bool:
    return bool((issue.title or "").strip() or (issue.body or "").strip())


RETRAIN = "train it again with `issuelab train --force`"


def _run_json(path: Path, kind: type) -> Any:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path}: missing: the run is incomplete; {RETRAIN}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunError(f"{path}: damaged ({e}); {RETRAIN}") from None
    if not isinstance(value, kind):
        raise RunError(f"{path}: expected a JSON {'object' if kind is dict else 'array'}, got {type(value).__name__}; {RETRAIN}")
    return value


def _policy(manifest: dict[str, Any], directory: Path) -> PolicyConfig:
    try:
        return PolicyConfig(**manifest["policy"])
    except (TypeError, ValueError) as e:
        raise RunError(f"{directory / 'manifest.json'}: field 'policy': {e}; {RETRAIN}") from None


def restore_interrupted(directory: Path) -> Path:
    """A replacement of the run stopped between its two renames (see `train._write_run`) leaves the old run
    as `.NAME.old` and nothing at NAME: put the old run back."""
    backup = directory.with_name(f".{directory.name}.old")
    if not directory.exists() and (backup / "manifest.json").exists():
        try:
            backup.rename(directory)
            print(f"issuelab: {directory}: restored the previous run from {backup.name} (its replacement was interrupted)", file=sys.stderr)
        except FileNotFoundError:
            pass  # another process restored it first
    return directory


def prediction_records(issues: Sequence[Issue], predictions: Sequence[Prediction]) -> list[dict[str, Any]]:
    """The predictions JSONL rows: the dataset fields plus output and scores."""
    return [
        dict(issue.to_dict(), output=p.output, scores=p.scores) for issue, p in zip(issues, predictions, strict=True)
    ]


def score_matrix(predictions: Sequence[Prediction], label_names: Sequence[str]) -> np.ndarray:
    """(issues, labels) scores of predictions, in label order."""
    return np.array([[p.scores[name] for name in label_names] for p in predictions], dtype=float).reshape(len(predictions), len(label_names))

"""Engines: one protocol, many models.

An engine turns issues into one score in [0, 1] per label. It learns a `Task` (the label set with
descriptions, single- or multi-label, the prompt) from plain values: it never sees the config, and
choosing labels from its scores (thresholds, argmax, the policy) is not its business (`issuelab.policy`).
Engines are found by name in `registry.py`. Nothing is pickled: an engine saves its weights as
npz/safetensors/JSON under a directory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypedDict

from ..data import Issue, Label, LabelList
from ..prompt import SEED_TEMPLATE

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Task(LabelList):
    """What an engine learns: the labels (in prompt order, with descriptions), whether an issue may
    carry several (sigmoids and BCE) or exactly one (softmax and CE), and the prompt of LLM engines."""

    labels: tuple[Label, ...]
    multi_label: bool
    prompt: str = SEED_TEMPLATE
    # The repository's issues whose labels are unknown (not "no label"): context for the engines that
    # read it (`fewshot` centres its embeddings on the repository's issues), never training targets.
    unlabeled: tuple[Issue, ...] = field(default=(), compare=False, repr=False)

    def label_issues(self) -> list[Issue]:
        """Each label's name and description as an issue that carries that label alone: engines with the
        `label_documents` option learn from them beside the real issues, so that a label with two
        examples is still known by its words (and one with two hundred hardly notices)."""
        return [Issue(f"label:{label.name}", label.name, label.description, [label.name]) for label in self.labels]


class EngineInfo(TypedDict, total=False):
    """What an engine reports of its training, recorded as `engine_info` in the run's manifest."""

    multi_label: bool
    finetuned: bool  # embed, head: the network was trained (not only a head on frozen features)
    train_seconds: float
    seconds_per_example: float
    steps: int  # optimizer steps
    stopped_early: bool  # lora: patience ran out
    best_eval_loss: float | None  # the restored weights' eval loss
    history: list[dict[str, Any]]  # per step: train_loss (and eval_loss where measured)
    base_model: dict[str, str]  # lora, head: llm.base_model.BaseModelInfo.to_json()
    weights: dict[str, float]  # ensemble: member name -> weight
    members: dict[str, EngineInfo]  # ensemble: member name -> its info


class Engine(Protocol):
    name: ClassVar[str]
    Options: ClassVar[type]  # a dataclass of the engine's options ([train.<name>] in issuelab.toml)
    generative: ClassVar[bool]  # answers with text (`generate`), as the lora engine does
    options: Any
    info: EngineInfo
    # Set by fit_out_of_fold when the scores it returned are not fully out of fold (a part fitted once on
    # all of train, folds included): they look better than held-out scores will, so the ensemble may
    # weight such a member down on them, never up.
    optimistic_out_of_fold: bool

    def quick_to_fit(self, task: Task) -> bool:
        """Fitting it a few more times for `task` (out-of-fold scores) costs seconds, not minutes."""
        ...

    def fit(self, train: list[Issue], eval: list[Issue] | None, task: Task, seed: int) -> None:
        """Learns `task` from `train`; `eval` (may be None) is for early stopping, not thresholds."""
        ...

    def fit_out_of_fold(self, train: list[Issue], task: Task, seed: int, folds: int) -> np.ndarray:
        """Fits on all of `train` and returns its out-of-fold scores: each issue's from a model fitted
        without it (`folds` folds)."""
        ...

    def predict_scores(self, issues: list[Issue]) -> np.ndarray:
        """Returns an array of shape (len(issues), len(labels)) of scores in [0, 1]."""
        ...

    def shared_files(self) -> list[Path]:
        """Model files a loaded run reads from outside its directory (a base LLM, a frozen encoder)."""
        ...

    def save(self, directory: Path) -> None: ...

    @classmethod
    def load(cls, directory: Path) -> Engine: ...


def similar_labeled(similar: np.ndarray, example_labels: np.ndarray, example_ids, label_index: int, top: int = 3) -> list[str]:
    """Evidence for one label: the `top` training issues carrying it with the highest `similar` (one score per
    training issue), as "similar labeled issues: REF (0.83), ..."; nothing when no training issue carries it."""
    import numpy as np

    carrying = np.flatnonzero(example_labels[:, label_index])
    nearest = carrying[np.argsort(-similar[carrying], kind="stable")[:top]]
    return ["similar labeled issues: " + ", ".join(f"{example_ids[i]} ({float(similar[i]):.2f})" for i in nearest)] if len(nearest) else []


class BaseEngine:
    """What engines share: out-of-fold fitting by refitting a fresh copy of the engine on each fold."""

    options: Any
    optimistic_out_of_fold = False

    def quick_to_fit(self, task: Task) -> bool:
        return True

    def fresh(self) -> Engine:
        """An untrained engine with the same options."""
        return type(self)(self.options)

    def fit_out_of_fold(self, train: list[Issue], task: Task, seed: int, folds: int) -> np.ndarray:
        from .folds import out_of_fold_scores

        scores = out_of_fold_scores(self.fresh, train, task, seed, folds)
        self.fit(train, None, task, seed)
        return scores

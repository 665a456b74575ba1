"""Engines: one protocol, many models.

An engine turns issues into one score in [0, 1] per label. Choosing labels from the scores
(per-label thresholds, argmax for single-label data, the policy) is shared, in `labeler.py`.
Nothing is pickled: an engine saves its weights as npz/safetensors/JSON under a directory.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    import numpy as np

    from ..config import Config
    from ..data import Issue

# name -> "module:Class"; imported on use so that `issuelab --help` stays fast.
ENGINES: dict[str, str] = {
    "tfidf": "issuelab.engines.tfidf:TfidfEngine",
    "lora": "issuelab.engines.lora:LoraEngine",
    "embed": "issuelab.engines.embed:EmbedEngine",
    "head": "issuelab.engines.head:HeadEngine",
    "ensemble": "issuelab.engines.ensemble:EnsembleEngine",
}


class Engine(Protocol):
    name: ClassVar[str]
    Options: ClassVar[type]  # a dataclass of the engine's options ([train.<name>] in issuelab.toml)

    def fit(self, train: list[Issue], eval: list[Issue] | None, config: Config, seed: int) -> None:
        """Learns from `train`; `eval` (may be None) is for early stopping, not thresholds."""
        ...

    def predict_scores(self, issues: list[Issue]) -> np.ndarray:
        """Returns an array of shape (len(issues), len(labels)) of scores in [0, 1]."""
        ...

    def save(self, directory: Path) -> None: ...

    @classmethod
    def load(cls, directory: Path) -> Engine: ...


def engine_class(name: str) -> Any:
    from ..errors import ConfigError

    if name not in ENGINES:
        raise ConfigError(f"unknown engine '{name}'; known engines: {', '.join(ENGINES)}")
    module_name, class_name = ENGINES[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def create_engine(name: str, options: dict[str, Any] | None = None) -> Engine:
    from ..config import dataclass_from_dict

    cls = engine_class(name)
    return cls(dataclass_from_dict(cls.Options, options or {}, f"[train.{name}]"))

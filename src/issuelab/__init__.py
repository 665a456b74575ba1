"""issuelab: label GitHub issues with small, fast models trained from LLM or human labels.

The public face, loaded on first use so that `import issuelab` (and `issuelab --help`) stays instant:

    config = issuelab.load_config("issuelab.toml")
    labeler, metrics = issuelab.train_run(config, train, eval, "runs/tfidf")
    labeler = issuelab.Labeler.load("runs/tfidf")
    decision = issuelab.decide(state, scores, ...)
"""

from __future__ import annotations

import importlib

from ._version import __version__

_PUBLIC = {
    "load_config": "issuelab.config",
    "train_run": "issuelab.train",
    "Labeler": "issuelab.labeler",
    "decide": "issuelab.policy",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'issuelab' has no attribute {name!r}")

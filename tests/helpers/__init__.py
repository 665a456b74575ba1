"""Helpers shared by the tests: a toy labeling task (a config and issues whose labels are learnable from
their words), local stand-ins for GitHub and OpenAI-compatible servers, tiny random models."""

from __future__ import annotations

import random
from pathlib import Path

from issuelab.data import Issue

REPO_ROOT = Path(__file__).resolve().parents[2]  # the project's checkout: examples/, action.yml

TOY_CONFIG = """\
[project]
repo = "acme/widgets"

[labels]
bug = "A reported error or unexpected behavior in the software."
enhancement = "A request for a new feature or an improvement to an existing one."
documentation = "Issues related to improving or expanding the documentation."
"ci/cd" = "Issues related to continuous integration and deployment pipelines."

[train]
engine = "tfidf"
seed = 0
multi_label = "auto"

[policy]
max_labels = 3
min_labels = 1
"""

# Words that signal each label; issues mix them with shared filler, so the task is learnable but not trivial.
SIGNALS = {
    "bug": ["crash", "error", "traceback", "broken", "fails", "exception"],
    "enhancement": ["feature", "support", "add", "option", "would", "propose"],
    "documentation": ["docs", "readme", "typo", "tutorial", "docstring", "guide"],
    "ci/cd": ["workflow", "pipeline", "actions", "deploy", "runner", "build"],
}
FILLER = ["the", "widget", "when", "using", "version", "please", "thanks", "we", "it", "on", "linux", "config"]


def make_issues(n: int, seed: int = 0, multi_label: bool = True) -> list[Issue]:
    rng = random.Random(seed)
    names = list(SIGNALS)
    issues = []
    for i in range(n):
        k = rng.choice([1, 1, 2]) if multi_label else 1
        labels = sorted(rng.sample(names, k), key=names.index)
        words = [w for label in labels for w in rng.sample(SIGNALS[label], 3)] + rng.sample(FILLER, 6)
        rng.shuffle(words)
        title = " ".join(words[:4])
        body = " ".join(words[4:]) if i % 7 else None  # some issues have no body
        issues.append(Issue(id=i + 1, title=title, body=body, labels=labels))
    return issues

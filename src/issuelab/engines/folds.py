"""Out-of-fold scores: every issue scored by an engine fitted without it.

What thresholds and ensemble weights are chosen on when the training data is all there is: a few
hundred issues cannot spare an eval split, and scores on issues a model was trained on are
overconfident. Folds are stratified (`split.kfold`) and seeded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..split import kfold

if TYPE_CHECKING:
    from ..data import Issue
    from . import Engine, Task


def fold_count(issues: int, folds: int) -> int:
    """`folds`, fewer when there are too few issues for each fold to hold two."""
    return max(2, min(folds, issues // 2))


def out_of_fold_scores(make_engine: Callable[[], Engine], issues: Sequence[Issue], task: Task, seed: int, folds: int) -> np.ndarray:
    """(issues, labels) scores, each row from a fresh engine fitted on the other folds."""
    scores = np.zeros((len(issues), len(task.labels)))
    for held_out in kfold(list(issues), fold_count(len(issues), folds), seed):
        held = set(held_out)
        engine = make_engine()
        engine.fit([issue for i, issue in enumerate(issues) if i not in held], None, task, seed)
        scores[held_out] = engine.predict_scores([issues[i] for i in held_out])
    return scores

"""One logistic regression per label over a feature matrix: the head of `tfidf` and of frozen `embed`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..data import Issue


def fit_logistic_heads(X, train: Sequence[Issue], labels: Sequence[str], C: float, balanced: bool, seed: int,
                       solver: str = "lbfgs") -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(coef (labels x features), intercept); a label with no positives (or no negatives) gets a constant score."""
    from sklearn.linear_model import LogisticRegression

    coef = np.zeros((len(labels), X.shape[1]), dtype=np.float32)
    intercept = np.zeros(len(labels), dtype=np.float32)
    for k, label in enumerate(labels):
        y = np.array([label in issue.labels for issue in train])
        if y.all() or not y.any():
            intercept[k] = 10.0 if y.all() else -10.0
            continue
        model = LogisticRegression(C=C, class_weight="balanced" if balanced else None, solver=solver, random_state=seed, max_iter=2000)
        model.fit(X, y)
        coef[k], intercept[k] = model.coef_[0], model.intercept_[0]
    return coef, intercept

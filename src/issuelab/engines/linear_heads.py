"""Label heads shared by engines: one logistic regression per label over a feature matrix (`tfidf`,
frozen `embed`), and the loss and probabilities of heads trained with their network (fine-tuned
`embed`, `head`): binary cross-entropy / sigmoids for multi-label data, cross-entropy / softmax for
single-label data."""

from __future__ import annotations

import numpy as np


def fit_logistic_heads(X, gold: np.ndarray, C: float, balanced: bool, seed: int, solver: str = "lbfgs") -> tuple[np.ndarray, np.ndarray]:
    """One logistic regression per label (column of the boolean `gold`): (coef (labels x features),
    intercept); a label with no positives (or no negatives) gets a constant score."""
    from sklearn.linear_model import LogisticRegression

    labels = gold.shape[1]
    coef = np.zeros((labels, X.shape[1]), dtype=np.float32)
    intercept = np.zeros(labels, dtype=np.float32)
    for k in range(labels):
        y = gold[:, k]
        if y.all() or not y.any():
            intercept[k] = 10.0 if y.all() else -10.0
            continue
        model = LogisticRegression(C=C, class_weight="balanced" if balanced else None, solver=solver, random_state=seed, max_iter=2000)
        model.fit(X, y)
        coef[k], intercept[k] = model.coef_[0], model.intercept_[0]
    return coef, intercept


def classification_loss(logits, targets, multi_label: bool):
    """targets: a (batch, labels) 0/1 float tensor."""
    import torch.nn.functional as F

    logits = logits.float()
    if multi_label:
        return F.binary_cross_entropy_with_logits(logits, targets)
    return F.cross_entropy(logits, targets.argmax(dim=1))


def probabilities(logits: np.ndarray, softmax: bool) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    if softmax:
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)
    return 1.0 / (1.0 + np.exp(-logits))

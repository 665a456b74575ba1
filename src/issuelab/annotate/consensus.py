"""Several teachers, one answer: k-of-n votes, agreement statistics, and human review.

- A label is kept when at least `min_votes` teachers give it (0: a majority of the teachers that
  answered validly). An issue's agreement is the mean pairwise Jaccard of its valid answers.
- Per label, Cohen's kappa of each pair of teachers over the issues both answered, averaged.
Issues the teachers agree on too little go to people: `annotate.review`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any


def majority(n_valid: int) -> int:
    return n_valid // 2 + 1


def consensus(votes: dict[str, list[str] | None], label_names: Sequence[str], min_votes: int = 0) -> tuple[list[str], float]:
    """(labels in label-set order, agreement) from each teacher's labels (None: no valid answer)."""
    valid = [set(labels) for labels in votes.values() if labels is not None]
    if not valid:
        return [], 0.0
    k = min_votes or majority(len(valid))
    counts = {name: sum(name in answer for answer in valid) for name in label_names}
    return [name for name in label_names if counts[name] >= k], pairwise_jaccard(valid)


def pairwise_jaccard(answers: Sequence[set[str]]) -> float:
    if len(answers) < 2:
        return 1.0
    scores = [len(a & b) / len(a | b) if a | b else 1.0 for a, b in itertools.combinations(answers, 2)]
    return sum(scores) / len(scores)


def cohen_kappa(a: Sequence[bool], b: Sequence[bool]) -> float | None:
    """Agreement beyond chance of two raters' yes/no decisions; None when it is undefined (no variation)."""
    n = len(a)
    if n == 0:
        return None
    observed = sum(x == y for x, y in zip(a, b)) / n
    pa, pb = sum(a) / n, sum(b) / n
    expected = pa * pb + (1 - pa) * (1 - pb)
    if expected == 1.0:
        return None
    return (observed - expected) / (1 - expected)


def agreement_report(per_issue_votes: Sequence[dict[str, list[str] | None]], label_names: Sequence[str]) -> dict[str, Any]:
    teachers = sorted({name for votes in per_issue_votes for name in votes})
    pairs: dict[str, float] = {}
    kappas: dict[str, list[float]] = {name: [] for name in label_names}
    for t1, t2 in itertools.combinations(teachers, 2):
        both = [(set(v[t1]), set(v[t2])) for v in per_issue_votes if v.get(t1) is not None and v.get(t2) is not None]
        pairs[f"{t1} / {t2}"] = round(sum(pairwise_jaccard([a, b]) for a, b in both) / len(both), 4) if both else None
        for name in label_names:
            kappa = cohen_kappa([name in a for a, _ in both], [name in b for _, b in both])
            if kappa is not None:
                kappas[name].append(kappa)
    return {
        "teachers": teachers,
        "issues": len(per_issue_votes),
        "pairwise_jaccard": pairs,
        "per_label_kappa": {name: round(sum(v) / len(v), 4) if v else None for name, v in kappas.items()},
    }

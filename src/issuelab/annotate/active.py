"""Active learning: spend the teachers on the issues the current model is least sure about.

Uncertainty from a run's per-label scores:
- margin: single-label, the gap between the two best labels; multi-label, the distance of the
  closest label score to its threshold. Small is unsure.
- entropy: of the normalised scores (single-label) or the mean binary entropy per label (multi-label).
`active_loop` runs rounds of label -> train -> pick until the rounds, a labeling budget or a target
eval F1 is reached; the labeling function is a teacher (issuelab.annotate) or, in benchmarks, the gold
labels.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..config import Config
from ..data import Issue
from ..labeler import Labeler
from ..metrics import score_outputs
from ..train import fit_labeler

STRATEGIES = ("margin", "entropy", "random")


def uncertainty(scores: np.ndarray, thresholds: np.ndarray, multi_label: bool, strategy: str = "margin") -> np.ndarray:
    """One value per issue; higher means less sure."""
    scores = np.clip(np.asarray(scores, dtype=float), 1e-9, 1 - 1e-9)
    if strategy == "margin":
        if multi_label:
            return -np.abs(scores - thresholds[None, :]).min(axis=1)
        top = np.sort(scores, axis=1)
        return -(top[:, -1] - top[:, -2]) if scores.shape[1] > 1 else -np.abs(scores[:, 0] - 0.5)
    if strategy == "entropy":
        if multi_label:
            return -(scores * np.log(scores) + (1 - scores) * np.log(1 - scores)).mean(axis=1)
        p = scores / scores.sum(axis=1, keepdims=True)
        return -(p * np.log(p)).sum(axis=1)
    raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")


def select(labeler: Labeler, issues: Sequence[Issue], n: int, strategy: str = "margin", seed: int = 0) -> list[int]:
    """Indices of the n issues to label next."""
    if n >= len(issues):
        return list(range(len(issues)))
    if strategy == "random":
        return sorted(random.Random(seed).sample(range(len(issues)), n))
    scores = labeler.engine.predict_scores(list(issues))
    order = np.argsort(-uncertainty(scores, labeler.threshold_array, labeler.multi_label, strategy), kind="stable")
    return sorted(int(i) for i in order[:n])


def pick_unlabeled(labeler: Labeler, issues: Sequence[Issue], labeled: Sequence[Issue], n: int, strategy: str = "margin") -> tuple[list[Issue], int]:
    """The `n` issues not yet in `labeled` (by id) that `labeler` is least sure about, and how many were unlabeled."""
    done = {issue.id for issue in labeled}
    pool = [issue for issue in issues if issue.id not in done]
    return [pool[i] for i in select(labeler, pool, n, strategy)], len(pool)


def active_loop(
    config: Config,
    pool: Sequence[Issue],
    eval_issues: Sequence[Issue],
    label: Callable[[list[Issue]], list[Issue]],
    *,
    seed_size: int,
    step: int,
    rounds: int,
    strategy: str = "margin",
    engine: str | None = None,
    seed: int = 0,
    target_f1: float | None = None,
    on_round: Callable[[dict[str, Any], Labeler, list[Issue]], None] | None = None,
) -> list[dict[str, Any]]:
    """Rounds of label -> train -> evaluate -> pick; returns one row per round (labeled count, eval F1)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    rng = random.Random(seed)
    unlabeled = list(pool)
    first = set(rng.sample(range(len(unlabeled)), min(seed_size, len(unlabeled))))
    picked = [issue for i, issue in enumerate(unlabeled) if i in first]
    unlabeled = [issue for i, issue in enumerate(unlabeled) if i not in first]
    labeled: list[Issue] = []
    curve = []
    for round_index in range(rounds):
        labeled += [issue for issue in label(picked) if issue.labels]
        started = time.perf_counter()
        labeler, _ = fit_labeler(config, labeled, None, engine, seed)
        predictions = labeler.predict(list(eval_issues))
        metrics = score_outputs("eval", [i.labels for i in eval_issues], [p.output for p in predictions], config.label_names)
        row = {"round": round_index, "labeled": len(labeled), "micro_f1": round(metrics.f1, 4),
               "macro_f1": round(metrics.macro_f1, 4), "train_seconds": round(time.perf_counter() - started, 2)}  # fmt: skip
        curve.append(row)
        if on_round:
            on_round(row, labeler, labeled)
        if (target_f1 is not None and metrics.f1 >= target_f1) or not unlabeled or round_index == rounds - 1:
            break
        chosen = set(select(labeler, unlabeled, step, strategy, seed + round_index + 1))
        picked = [issue for i, issue in enumerate(unlabeled) if i in chosen]
        unlabeled = [issue for i, issue in enumerate(unlabeled) if i not in chosen]
    return curve

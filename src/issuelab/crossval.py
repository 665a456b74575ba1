"""K-fold cross-validation: how a repository with a few hundred labeled issues measures itself.

Each fold is predicted by a model trained on the other folds; micro counts are summed over all
folds (and repeats), so the metrics cover every issue once per repeat. The task (single- or
multi-label) is resolved once, on all the issues, so every fold learns the same one. Each fold's model
is trained exactly as `train` would: multi-label thresholds come from out-of-fold scores within the
fold's training part, or, for engines calibrated on an eval split, from a stratified tenth of it held
out; the test fold is never seen.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from tqdm.auto import tqdm

from .config import Config
from .data import Issue
from .labeler import Labeler
from .metrics import ModelMetrics, score_outputs
from .split import kfold, split_issues
from .train import fit_labeler, make_task, thresholds_from_folds

THRESHOLD_HOLDOUT = 0.1


@dataclass
class Fold:
    repeat: int
    seed: int
    test_index: list[int]  # positions in the issues given to crossval_folds
    labeler: Labeler  # trained on the other folds
    fit_seconds: float
    train: list[Issue]  # the other folds, in order
    fit: Callable[[list[Issue]], Labeler]  # trains another labeler the way this fold's was, on any issues


def crossval_folds(
    config: Config,
    issues: Sequence[Issue],
    engine: str | None = None,
    folds: int = 5,
    repeats: int = 1,
    seed: int | None = None,
    progress: bool = True,
) -> Iterator[Fold]:
    """Trains one model per fold and repeat; each sees every issue but the fold's."""
    engine = engine or config.train.engine
    seed = config.train.seed if seed is None else seed
    task = make_task(config, issues)
    hold_out = task.multi_label and not thresholds_from_folds(config, task, engine)
    bar = tqdm(total=folds * repeats, desc=f"crossval {engine}", unit="fold", disable=None if progress else True)
    for repeat in range(repeats):
        repeat_seed = seed + repeat
        for test_idx in kfold(issues, folds, repeat_seed):
            held_out = set(test_idx)
            rest = [issue for i, issue in enumerate(issues) if i not in held_out]
            fit = partial(_fit, config, engine=engine, seed=repeat_seed, task=task, hold_out=hold_out)
            started = time.perf_counter()
            labeler = fit(rest)
            yield Fold(repeat, repeat_seed, list(test_idx), labeler, time.perf_counter() - started, rest, fit)
            bar.update()
    bar.close()


def _fit(config: Config, train: list[Issue], *, engine: str, seed: int, task, hold_out: bool) -> Labeler:
    """`train` as `issuelab train` uses it; an engine calibrated on an eval split gets a stratified tenth."""
    eval = None
    if hold_out:
        train, eval = split_issues(train, [1 - THRESHOLD_HOLDOUT, THRESHOLD_HOLDOUT], seed)
    return fit_labeler(config, train, eval, engine, seed, task)[0]


def crossval(
    config: Config,
    issues: Sequence[Issue],
    engine: str | None = None,
    folds: int = 5,
    repeats: int = 1,
    seed: int | None = None,
    progress: bool = True,
) -> tuple[ModelMetrics, dict[str, Any]]:
    engine = engine or config.train.engine
    seed = config.train.seed if seed is None else seed
    total = ModelMetrics(f"{engine} ({folds}-fold)", config.label_names)
    fold_f1 = []
    for fold in crossval_folds(config, issues, engine, folds, repeats, seed, progress):
        test = [issues[i] for i in fold.test_index]
        outputs = [p.output for p in fold.labeler.predict(test)]
        metrics = score_outputs(total.name, [issue.labels for issue in test], outputs, config.label_names)
        fold_f1.append(metrics.f1)
        total.merge(metrics)
    info = {
        "engine": engine,
        "folds": folds,
        "repeats": repeats,
        "seeds": [seed + r for r in range(repeats)],
        "fold_f1": [round(f, 5) for f in fold_f1],
        "fold_f1_stdev": round(statistics.stdev(fold_f1), 5) if len(fold_f1) > 1 else 0.0,
    }
    return total, info

"""K-fold cross-validation: how a repository with a few hundred labeled issues measures itself.

Each fold is predicted by a model trained on the other folds; micro counts are summed over all
folds (and repeats), so the metrics cover every issue once per repeat. For multi-label data a
stratified tenth of the training folds is held out to tune the per-label thresholds.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from tqdm.auto import tqdm

from .config import Config
from .data import Issue
from .evaluate import ModelMetrics, score_outputs
from .split import kfold, split_issues
from .train import fit_labeler, resolve_multi_label

THRESHOLD_HOLDOUT = 0.1


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
    multi_label = resolve_multi_label(config.train.multi_label, issues)
    total = ModelMetrics(f"{engine} ({folds}-fold)", config.label_names)
    seeds, fold_f1 = [], []
    bar = tqdm(total=folds * repeats, desc=f"crossval {engine}", unit="fold", disable=None if progress else True)
    for repeat in range(repeats):
        repeat_seed = seed + repeat
        seeds.append(repeat_seed)
        for test_idx in kfold(issues, folds, repeat_seed):
            held_out = set(test_idx)
            rest = [issue for i, issue in enumerate(issues) if i not in held_out]
            test = [issues[i] for i in test_idx]
            eval = None
            if multi_label:
                rest, eval = split_issues(rest, [1 - THRESHOLD_HOLDOUT, THRESHOLD_HOLDOUT], repeat_seed)
            labeler, _ = fit_labeler(config, rest, eval, engine, repeat_seed)
            outputs = [p.output for p in labeler.predict(test)]
            fold = score_outputs(total.name, [issue.labels for issue in test], outputs, config.label_names)
            fold_f1.append(fold.f1)
            total.merge(fold)
            bar.update()
    bar.close()
    info = {
        "engine": engine,
        "folds": folds,
        "repeats": repeats,
        "seeds": seeds,
        "fold_f1": [round(f, 5) for f in fold_f1],
        "fold_f1_stdev": round(statistics.stdev(fold_f1), 5) if len(fold_f1) > 1 else 0.0,
    }
    return total, info

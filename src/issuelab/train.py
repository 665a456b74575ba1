"""Train: resolve the task, fit an engine, tune per-label thresholds on the eval split, write a run directory.

`make_task` is the one place where "auto" becomes single- or multi-label; every engine, threshold
and fold of a run sees the task it returns.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from ._version import __version__
from .config import Config
from .data import Issue, current_umask, file_sha256
from .engines import Task
from .engines.registry import create_engine
from .errors import DataError, IssuelabError
from .labeler import Labeler
from .metrics import ModelMetrics, gold_matrix, score_outputs
from .policy import DEFAULT_THRESHOLD
from .runtime import is_main_process, library_versions
from .thresholds import MIN_POSITIVES_TO_TUNE, calibration_report, tune_thresholds


def make_task(config: Config, issues: Sequence[Issue]) -> Task:
    """The config's labels and prompt; multi-label unless [train] multi_label says "false", or says
    "auto" and every issue carries exactly one label."""
    setting = config.train.multi_label
    multi_label = setting == "true" or (setting == "auto" and not all(len(issue.labels) == 1 for issue in issues))
    return Task(tuple(config.labels), multi_label, config.prompt.template)


def _data_info(path: str | Path | None, issues: Sequence[Issue]) -> dict:
    info = {"examples": len(issues)}
    if path is not None:
        info.update(path=str(path), sha256=file_sha256(path))
    return info


def fit_labeler(
    config: Config,
    train: list[Issue],
    eval: list[Issue] | None,
    engine: str | None = None,
    seed: int | None = None,
    task: Task | None = None,
) -> tuple[Labeler, ModelMetrics | None]:
    """Fits in memory; returns the labeler and its metrics on `eval` (None without eval data).
    `task` defaults to `make_task(config, train)` (cross-validation resolves it once for all folds)."""
    if not train:
        raise DataError("the training data is empty")
    engine_name = engine or config.train.engine
    seed = config.train.seed if seed is None else seed
    task = task or make_task(config, train)
    label_names = task.label_names
    model = create_engine(engine_name, config.engine_options(engine_name), config.train.engine_options)
    model.fit(train, eval, task, seed)
    thresholds = {name: DEFAULT_THRESHOLD for name in label_names}
    calibration = None
    if eval:
        eval_scores, eval_gold = model.predict_scores(eval), gold_matrix(eval, label_names)
        if task.multi_label:
            thresholds = tune_thresholds(eval_scores, eval_gold, label_names)
        calibration = calibration_report(eval_scores, eval_gold, label_names, thresholds, task.multi_label)
    labeler = Labeler(
        engine=model,
        labels=[{"name": label.name, "description": label.description} for label in task.labels],
        thresholds=thresholds,
        multi_label=task.multi_label,
        policy=config.policy,
        prompt=task.prompt,
        manifest={
            "engine": engine_name,
            "engine_options": asdict(model.options),
            "engine_info": model.info,
            "seed": seed,
            "aliases": config.aliases,  # the GitHub side treats these spellings as the labels
            "calibration": calibration,
        },
    )
    metrics = None
    if eval:
        outputs = [p.output for p in labeler.predict(eval)]
        metrics = score_outputs("eval", [issue.labels for issue in eval], outputs, label_names)
    return labeler, metrics


def train_run(
    config: Config,
    train: list[Issue],
    eval: list[Issue] | None,
    out_dir: str | Path,
    *,
    engine: str | None = None,
    seed: int | None = None,
    train_path: str | Path | None = None,
    eval_path: str | Path | None = None,
    force: bool = False,
) -> tuple[Labeler, ModelMetrics | None]:
    """Trains and writes the run directory `out_dir` (built beside it, then renamed into place)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        raise IssuelabError(f"{out_dir}: already exists and is not empty; choose another --out or pass --force")
    started = time.perf_counter()
    labeler, metrics = fit_labeler(config, train, eval, engine, seed)
    labeler.manifest.update(
        issuelab_version=__version__,
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        labels=labeler.label_names,
        data={"train": _data_info(train_path, train), "eval": _data_info(eval_path, eval or [])},
        versions=library_versions(),
        train_seconds=round(time.perf_counter() - started, 2),
        eval_metrics=metrics.to_json() if metrics else None,
    )
    if not is_main_process():  # under `accelerate launch`, one process writes the run
        return labeler, metrics
    fallback = (labeler.manifest.get("calibration") or {}).get("fallback")
    if fallback:
        print(
            f"issuelab: default threshold {DEFAULT_THRESHOLD} kept for {', '.join(fallback)}: fewer than "
            f"{MIN_POSITIVES_TO_TUNE} eval issues carry it (more labeled issues would let it be tuned)",
            file=sys.stderr,
        )
    _write_run(labeler, out_dir)
    return labeler, metrics


def _write_run(labeler: Labeler, out_dir: Path) -> None:
    """Saves into a staging directory beside `out_dir`, then renames it into place."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp makes 0700; a service user may need to read the run
    try:
        labeler.save(staging)
        if out_dir.exists():
            backup = out_dir.with_name(f".{out_dir.name}.old")
            shutil.rmtree(backup, ignore_errors=True)
            out_dir.rename(backup)
            staging.rename(out_dir)
            shutil.rmtree(backup)
        else:
            staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

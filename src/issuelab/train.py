"""Train: fit an engine, tune per-label thresholds on the eval split, write a run directory."""

from __future__ import annotations

import datetime as dt
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

from . import __version__
from .config import Config
from .data import Issue, current_umask, file_sha256
from .engines import create_engine
from .errors import DataError, IssuelabError
from .evaluate import ModelMetrics, score_outputs
from .labeler import DEFAULT_THRESHOLD, MIN_POSITIVES_TO_TUNE, Labeler, calibration_report, gold_matrix, tune_thresholds

LIBRARIES = ("numpy", "scipy", "scikit-learn", "torch", "transformers", "peft")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "issuelab": __version__}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def is_main_process() -> bool:
    """False in the non-zero ranks of a distributed launch (accelerate, torchrun)."""
    return int(os.environ.get("RANK", "0")) == 0


def resolve_multi_label(setting: str, train: Sequence[Issue]) -> bool:
    if setting == "auto":
        return not all(len(issue.labels) == 1 for issue in train)
    return setting == "true"


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
    overrides: dict | None = None,
) -> tuple[Labeler, ModelMetrics | None]:
    """Fits in memory; returns the labeler and its metrics on `eval` (None without eval data).
    `overrides` replace engine options of the config (the CLI's --max-steps and the like)."""
    if not train:
        raise DataError("the training data is empty")
    engine_name = engine or config.train.engine
    seed = config.train.seed if seed is None else seed
    label_names = config.label_names
    model = create_engine(engine_name, config.engine_options(engine_name) | (overrides or {}))
    model.fit(train, eval, config, seed)
    multi_label = resolve_multi_label(config.train.multi_label, train)
    thresholds = {name: DEFAULT_THRESHOLD for name in label_names}
    calibration = None
    if eval:
        eval_scores, eval_gold = model.predict_scores(eval), gold_matrix(eval, label_names)
        if multi_label:
            thresholds = tune_thresholds(eval_scores, eval_gold, label_names)
        calibration = calibration_report(eval_scores, eval_gold, label_names, thresholds, multi_label)
    labeler = Labeler(
        engine=model,
        labels=[{"name": label.name, "description": label.description} for label in config.labels],
        thresholds=thresholds,
        multi_label=multi_label,
        policy=config.policy,
        prompt=config.prompt.template,
        manifest={
            "engine": engine_name,
            "engine_options": asdict(model.options),
            "engine_info": getattr(model, "info", {}),
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
    overrides: dict | None = None,
    train_path: str | Path | None = None,
    eval_path: str | Path | None = None,
    force: bool = False,
) -> tuple[Labeler, ModelMetrics | None]:
    """Trains and writes the run directory `out_dir` (built beside it, then renamed into place)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        raise IssuelabError(f"{out_dir}: already exists and is not empty; choose another --out or pass --force")
    started = time.perf_counter()
    labeler, metrics = fit_labeler(config, train, eval, engine, seed, overrides)
    labeler.manifest.update(
        issuelab_version=__version__,
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        labels=config.label_names,
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
    return labeler, metrics

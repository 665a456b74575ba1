"""Train: resolve the task, fit an engine, tune per-label thresholds on the eval split, write a run directory.

`make_task` is the one place where "auto" becomes single- or multi-label; every engine, threshold
and fold of a run sees the task it returns.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from ._version import __version__
from .config import Config
from .data import Issue, current_umask, file_sha256
from .engines import Task
from .engines.registry import create_engine
from .errors import DataError, IssuelabError
from .labeler import Labeler, has_text, restore_interrupted
from .metrics import ModelMetrics, gold_matrix, score_outputs
from .policy import DEFAULT_THRESHOLD, PolicyConfig, label_matrix, threshold_array
from .runtime import is_main_process, library_versions
from .thresholds import (
    MIN_POSITIVES_TO_TUNE,
    calibration_report,
    held_out_thresholds,
    precision_thresholds,
    with_description_thresholds,
)


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


def learned_policy(policy: PolicyConfig, issues: Sequence[Issue]) -> PolicyConfig:
    """The policy with the label-count rule of the training data: no forced label when some training
    issues carry none (or a precision target is set), and at most as many labels as any training issue carries."""
    counts = [len(issue.labels) for issue in issues]
    most = max(counts, default=0)
    # A label filled in by min_labels is unconfident by definition: a precision target leaves none.
    min_labels = policy.min_labels if min(counts, default=0) > 0 and not policy.target_precision else 0
    max_labels = min(policy.max_labels, most) if policy.max_labels else most
    return dataclasses.replace(policy, min_labels=min_labels, max_labels=max(max_labels, min_labels, 1))


def calibration_method(setting: str, model, task: Task, eval: list[Issue] | None) -> str:
    """How thresholds are set: "argmax" (single-label), "folds", "eval" or "default" (no data for it);
    a run with no labeled issue at all is "zero-shot" (`fit_labeler`)."""
    if not task.multi_label:
        return "argmax"
    if setting == "folds" or (setting == "auto" and model.quick_to_fit(task)):
        return "folds"
    return "eval" if eval else "default"


def thresholds_from_folds(config: Config, task: Task, engine: str | None = None) -> bool:
    """Whether a multi-label run of `engine` chooses its thresholds out of fold (needing no eval split)."""
    name = engine or config.train.engine
    model = create_engine(name, config.engine_options(name), config.train.engine_options)
    return calibration_method(config.train.calibration, model, task, None) == "folds"


def fit_labeler(
    config: Config,
    train: list[Issue],
    eval: list[Issue] | None,
    engine: str | None = None,
    seed: int | None = None,
    task: Task | None = None,
    unlabeled: Sequence[Issue] = (),
) -> tuple[Labeler, ModelMetrics | None]:
    """Fits in memory; returns the labeler and its held-out metrics: out of fold over train + eval when
    thresholds are chosen on folds, else on `eval` (None without eval data). `task` defaults to
    `make_task(config, train)` (cross-validation resolves it once for all folds); `unlabeled` issues of
    the repository (labels unknown) are context for the engines that read it (`Task.unlabeled`)."""
    engine_name = engine or config.train.engine
    seed = config.train.seed if seed is None else seed
    task = task or make_task(config, train)
    if unlabeled:
        task = replace(task, unlabeled=tuple(unlabeled))
    names = task.label_names
    model = create_engine(engine_name, config.engine_options(engine_name), config.train.engine_options)
    if not train and not getattr(model, "trains_on_nothing", False):
        raise DataError(f"the training data is empty: engine '{engine_name}' learns from labeled issues (the fewshot engine starts from none)")
    method = calibration_method(config.train.calibration, model, task, eval) if train or eval else "zero-shot"
    data = train + (eval or []) if method == "folds" else train
    policy = learned_policy(config.policy, data) if task.multi_label and data else config.policy  # nothing to learn from: as configured
    thresholds, calibration, oof = _fit_and_calibrate(model, method, train, eval, data, task, seed, config.train.folds, policy)
    if policy.target_precision and task.multi_label and (oof is not None or (eval and method == "eval")):
        thresholds, calibration = _for_precision(model, policy.target_precision, thresholds, calibration, oof, data if oof is not None else eval, names)
    if task.multi_label and hasattr(model, "description_thresholds"):  # labels no training issue carries: their description
        thresholds, calibration = with_description_thresholds(thresholds, calibration, model.description_thresholds())
    metrics = None
    if oof is not None:
        chosen = label_matrix(oof, threshold_array(thresholds, names), True, policy.min_labels, policy.max_labels)
        metrics = _scored("out-of-fold", data, chosen, names)
    labeler = Labeler(
        engine=model,
        labels=[{"name": label.name, "description": label.description} for label in task.labels],
        thresholds=thresholds,
        multi_label=task.multi_label,
        policy=policy,
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
    if eval and method != "folds":
        metrics = score_outputs("eval", [issue.labels for issue in eval], [p.output for p in labeler.predict(eval)], names)
    return labeler, metrics


def _fit_and_calibrate(model, method: str, train, eval, data, task: Task, seed: int, folds: int, policy: PolicyConfig):
    """Fits `model` and chooses its thresholds by `method`: (thresholds, calibration report, the
    out-of-fold scores of `data` when they were computed)."""
    names = task.label_names
    if method == "folds":  # thresholds on out-of-fold scores, then the model on all the data
        scores, gold = model.fit_out_of_fold(data, task, seed, folds), gold_matrix(data, names)
        return *_held_out_calibration(scores, gold, names, policy, f"out-of-fold ({folds} folds)"), scores
    model.fit(train, eval, task, seed)
    thresholds, calibration = {name: DEFAULT_THRESHOLD for name in names}, None
    if eval:
        eval_scores, eval_gold = model.predict_scores(eval), gold_matrix(eval, names)
        if method == "eval":  # chosen as out of fold: per-label maxima on a tenth of the issues overfit more still
            thresholds, calibration = _held_out_calibration(eval_scores, eval_gold, names, policy, "eval split")
        else:  # single-label: the argmax decides, the report still records the scores' calibration
            calibration = calibration_report(eval_scores, eval_gold, names, thresholds, task.multi_label, "eval split")
    return thresholds, calibration, None


def _held_out_calibration(scores, gold, names, policy: PolicyConfig, source: str) -> tuple[dict, dict]:
    """Multi-label thresholds chosen on held-out `scores` and the report of how."""
    thresholds, chosen = held_out_thresholds(scores, gold, names, policy.min_labels, policy.max_labels)
    return thresholds, calibration_report(scores, gold, names, thresholds, True, source, chosen)


def _for_precision(model, target: float, f1_thresholds: dict, calibration: dict, scores, issues, names) -> tuple[dict, dict]:
    """Apply thresholds for `target` precision on the scores thresholds were chosen on (out of fold, or the
    eval split); the F1 thresholds and the labels that cannot reach the target are kept in the report."""
    scores = scores if scores is not None else model.predict_scores(issues)
    thresholds, unreachable = precision_thresholds(scores, gold_matrix(issues, names), names, target)
    # every label now has a precision threshold (or none it reaches): none is left at the global one
    calibration = dict(calibration or {}, fallback=[], target_precision={"target": target, "unreachable": unreachable, "f1_thresholds": f1_thresholds})
    for label, entry in calibration.get("labels", {}).items():
        calibration["labels"][label] = dict(entry, threshold=thresholds[label], method="precision" if label not in unreachable else "never")
    return thresholds, calibration


def _scored(name: str, issues: Sequence[Issue], chosen: np.ndarray, names: Sequence[str]) -> ModelMetrics:
    outputs = [", ".join(label for label, on in zip(names, row) if on) for row in chosen]
    return score_outputs(name, [issue.labels for issue in issues], outputs, names)


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
    unlabeled: Sequence[Issue] = (),
    force: bool = False,
    force_degenerate: bool = False,
) -> tuple[Labeler, ModelMetrics | None]:
    """Trains and writes the run directory `out_dir` (built beside it, then renamed into place). A model
    that learned nothing (see `degenerate`) is not written unless `force_degenerate`: a good run at
    `out_dir` is never replaced by it."""
    out_dir = restore_interrupted(Path(out_dir))
    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        raise IssuelabError(f"{out_dir}: already exists and is not empty; choose another --out or pass --force")
    if train and not any(map(has_text, train)):
        raise DataError(f"{train_path or 'the training data'}: every issue has an empty title and body: there is no text to learn from")
    warnings = data_warnings(config, train, eval, train_path, eval_path, engine or config.train.engine)
    started = time.perf_counter()
    labeler, metrics = fit_labeler(config, train, eval, engine, seed, unlabeled=unlabeled)
    problem = degenerate(labeler, train + (eval or []))
    if problem and not force_degenerate:
        kept = f"; the run already at {out_dir} is unchanged" if out_dir.exists() else ""
        raise DataError(f"{out_dir}: not written: {problem}{kept}. Fix the training data, or pass --force-degenerate to write it anyway")
    warnings += [problem] if problem else []
    labeler.manifest.update(
        issuelab_version=__version__,
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        labels=labeler.label_names,
        data={"train": _data_info(train_path, train), "eval": _data_info(eval_path, eval or []), "unlabeled_issues": len(unlabeled)},
        versions=library_versions(),
        train_seconds=round(time.perf_counter() - started, 2),
        eval_metrics=metrics.to_json() if metrics else None,
        warnings=warnings,
    )
    if not is_main_process():  # under `accelerate launch`, one process writes the run
        return labeler, metrics
    for warning in warnings:
        print(f"issuelab: warning: {warning}", file=sys.stderr)
    calibration = labeler.manifest.get("calibration") or {}
    if calibration.get("fallback"):
        print(
            f"issuelab: the global threshold {calibration['global_threshold']} kept for {', '.join(calibration['fallback'])}: fewer than {MIN_POSITIVES_TO_TUNE} "
            f"issues of the {calibration['source']} carry it (more labeled issues would let it be tuned)",
            file=sys.stderr,
        )
    _write_run(labeler, out_dir)
    return labeler, metrics


MIN_EXAMPLES = 3  # fewer training issues than this for a label: warned about


def data_warnings(config: Config, train: Sequence[Issue], eval: Sequence[Issue] | None, train_path=None, eval_path=None,
                  engine: str = "") -> list[str]:
    """What is legal in the training data but likely a mistake; printed and kept in the run's manifest."""
    warnings = []
    issues = list(train) + list(eval or [])
    counts = Counter(label for issue in issues for label in issue.labels)
    if issues:
        unseen = [name for name in config.label_names if not counts[name]]
        rare = [f"{name} ({counts[name]})" for name in config.label_names if 0 < counts[name] < MIN_EXAMPLES]
        if unseen:
            warnings.append(f"no training issue carries {', '.join(unseen)}: " + (
                "scored from the label descriptions alone" if engine == "fewshot" else "it will rarely or never be predicted"))  # fmt: skip
        if rare:
            warnings.append(f"fewer than {MIN_EXAMPLES} training issues carry {', '.join(rare)}: too few to learn from reliably")
    for issues_of, path in ((train, train_path), (eval or [], eval_path)):
        seen, repeated = set(), []
        for issue in issues_of:
            (repeated.append if issue.id in seen else seen.add)(issue.id)
        if repeated:
            warnings.append(f"{path or 'the data'}: {len(repeated)} issue ids appear more than once (e.g. {', '.join(map(str, repeated[:3]))}): "
                            f"a duplicate weighs double and may sit on both sides of a split")  # fmt: skip
    shared = {issue.id for issue in train} & {issue.id for issue in eval or []}
    if shared:
        warnings.append(f"{len(shared)} issue ids are in both the training and the evaluation data (e.g. {', '.join(map(str, sorted(shared, key=str)[:3]))}): "
                        "the evaluation overstates the model")  # fmt: skip
    empty = sum(not has_text(issue) for issue in issues)
    if empty:
        warnings.append(f"{empty} training issues have an empty title and body")
    return warnings


def degenerate(labeler: Labeler, issues: Sequence[Issue]) -> str | None:
    """Why the model learned nothing, or None: no issue carries a label (for an engine that learns from
    labels), or it gives different issues the same scores."""
    learns_from_labels = not getattr(labeler.engine, "trains_on_nothing", False)
    if issues and learns_from_labels and not any(issue.labels for issue in issues):
        return "no training issue carries a label of the config, so the model would give every issue the same labels"
    texts = {}
    for issue in issues:  # a few distinct, non-empty issues
        text = f"{issue.title or ''}\n{issue.body or ''}".strip()
        if text and text not in texts:
            texts[text] = issue
        if len(texts) == 8:
            break
    if len(texts) >= 2:
        scores = np.array(labeler.engine.predict_scores(list(texts.values())), dtype=float)
        if np.ptp(scores, axis=0).max() < 1e-9:
            return f"the model gives {len(texts)} different training issues exactly the same scores"
    return None


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

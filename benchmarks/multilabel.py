"""Many labels, several per issue, few labeled issues: the protocols of $ISSUELAB_DATA/multilabel/README.md.

Three real repositories (scikit-learn, MixedRealityToolkit-Unity, huggingface/datasets), their
maintainers' content labels (13 to 20 each, names and descriptions from `labels.json`):
- small: 160 issues drawn with seeds 0, 1, 2 from those carrying a benchmark label, 5-fold
  cross-validation in each draw (~128 training issues); metrics averaged over the 15 folds.
- full: the oldest 80% for training (its newest eighth as the eval split, for engines that use one),
  the newest 20% for testing.

Every engine is trained as `issuelab train` would (the config's defaults unless --set), and the plain
references of the README are computed in the same run on the same folds: TF-IDF (1-2 grams, sublinear)
+ one class-balanced logistic regression per label (C=10), one global threshold chosen on out-of-fold
scores of the training folds, at least one label per issue; and the same averaged with MiniLM + logistic
regression.

    python benchmarks/multilabel.py --engines tfidf ensemble --json docs/results/multilabel-small.json
    python benchmarks/multilabel.py --protocol full --engines tfidf ensemble --json docs/results/multilabel-full.json

Data: $ISSUELAB_DATA/multilabel/{sklearn,mrtk,hf-datasets}/ (default ../shared/data), read in place.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from common import ROOT, machine, set_engine_options, write_report
from issuelab.config import Config, Label, TrainConfig
from issuelab.data import Issue
from issuelab.engines import Task
from issuelab.engines.folds import out_of_fold_scores
from issuelab.metrics import gold_matrix, score_outputs
from issuelab.policy import label_matrix
from issuelab.split import kfold
from issuelab.thresholds import THRESHOLD_GRID
from issuelab.train import fit_labeler

SETS = ["sklearn", "mrtk", "hf-datasets"]
REFERENCES = ["reference: tf-idf", "reference: tf-idf + MiniLM"]


def data_dir() -> Path:
    return Path(os.environ.get("ISSUELAB_DATA", ROOT.parent / "shared/data")) / "multilabel"


def load_set(folder: Path) -> tuple[list[Label], list[Issue]]:
    """The benchmark labels and the issues that carry one of them (other labels dropped), oldest first."""
    labels = [Label(item["name"], item["description"]) for item in json.loads((folder / "labels.json").read_text(encoding="utf-8"))]
    names = {label.name for label in labels}
    issues = []
    for line in (folder / "issues.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        kept = [label for label in row["labels"] if label in names]
        if kept:
            issues.append(Issue(row["id"], row.get("title") or "", row.get("body"), kept, {"created_at": row.get("created_at")}))
    return labels, issues


def small_folds(issues: list[Issue], draws=(0, 1, 2), size: int = 160, folds: int = 5):
    for seed in draws:
        draw = random.Random(seed).sample(issues, size)
        for test_index in kfold(draw, folds, seed):
            held = set(test_index)
            yield [draw[i] for i in range(size) if i not in held], None, [draw[i] for i in test_index]


def full_split(issues: list[Issue]):
    train_end = int(len(issues) * 0.8)
    train, test = issues[:train_end], issues[train_end:]
    eval_start = len(train) - len(train) // 8
    yield train[:eval_start], train[eval_start:], test


# -- the references -------------------------------------------------------------------------------


class ReferenceTfidf:
    """scikit-learn's TF-IDF (1-2 grams, sublinear) and one class-balanced logistic regression per label."""

    def fit(self, train, eval, task, seed):
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        self.vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
        X, gold = self.vectorizer.fit_transform([i.text for i in train]), gold_matrix(train, task.label_names)
        self.models = [None if gold[:, k].all() or not gold[:, k].any() else
                       LogisticRegression(C=10.0, class_weight="balanced", max_iter=2000).fit(X, gold[:, k])
                       for k in range(gold.shape[1])]  # fmt: skip
        self.constant = gold.any(axis=0).astype(float)

    def predict_scores(self, issues):
        X = self.vectorizer.transform([i.text for i in issues])
        return np.stack([m.predict_proba(X)[:, 1] if m else np.full(len(issues), c) for m, c in zip(self.models, self.constant)], axis=1)


class ReferenceMiniLM:
    """all-MiniLM-L6-v2 embeddings, frozen, and one logistic regression per label (issuelab's frozen embed)."""

    def fit(self, train, eval, task, seed):
        from issuelab.engines.embed import EmbedEngine, EmbedOptions

        self.engine = EmbedEngine(EmbedOptions(finetune="no"))
        self.engine.fit(train, None, task, seed)

    def predict_scores(self, issues):
        return self.engine.predict_scores(issues)


class Averaged:
    def __init__(self, *parts):
        self.parts = parts

    def fit(self, train, eval, task, seed):
        for part in self.parts:
            part.fit(train, eval, task, seed)

    def predict_scores(self, issues):
        return sum(part.predict_scores(issues) for part in self.parts) / len(self.parts)


def reference_outputs(make, train: list[Issue], test: list[Issue], task: Task, seed: int) -> list[str]:
    """One global threshold on out-of-fold scores of the training issues, at least one label per issue."""
    names = task.label_names
    oof = out_of_fold_scores(make, train, task, seed, 5)
    gold = gold_matrix(train, names)

    def micro(threshold) -> float:
        pred = label_matrix(oof, threshold, True, 1, 0)
        return 2 * (pred & gold).sum() / max(1, pred.sum() + gold.sum())

    threshold = max(THRESHOLD_GRID, key=micro)
    model = make()
    model.fit(train, None, task, seed)
    chosen = label_matrix(model.predict_scores(test), threshold, True, 1, 0)
    return [", ".join(n for n, on in zip(names, row) if on) for row in chosen]


# -- the run --------------------------------------------------------------------------------------


def run_set(name: str, config: Config, engines: list[str], protocol: str, seed: int) -> dict:
    labels, issues = load_set(data_dir() / name)
    config = Config(labels=labels, train=config.train, policy=config.policy)
    task = Task(tuple(labels), multi_label=True)
    splits = list(small_folds(issues) if protocol == "small" else full_split(issues))
    systems = engines + REFERENCES
    folds: dict[str, list[dict]] = {system: [] for system in systems}
    for k, (train, eval, test) in enumerate(splits):
        gold = [i.labels for i in test]
        for system in systems:
            started = time.perf_counter()
            if system in REFERENCES:
                make = ReferenceTfidf if system == REFERENCES[0] else (lambda: Averaged(ReferenceTfidf(), ReferenceMiniLM()))
                outputs = reference_outputs(make, train + (eval or []), test, task, seed)
                trained, predict_ms = time.perf_counter() - started, None
            else:
                labeler, _ = fit_labeler(config, train, eval, system, seed, task)
                trained = time.perf_counter() - started
                started = time.perf_counter()
                outputs = [p.output for p in labeler.predict(test)]
                predict_ms = 1000 * (time.perf_counter() - started) / len(test)
            m = score_outputs(system, gold, outputs, task.label_names)
            folds[system].append({"micro_f1": m.f1, "jaccard": m.jaccard, "macro_f1": m.macro_f1, "invalid": m.invalid,
                                  "train_seconds": trained, "predict_ms": predict_ms})  # fmt: skip
        line = "  ".join(f"{s} {folds[s][-1]['micro_f1']:.3f}" for s in systems)
        print(f"{name} fold {k + 1}/{len(splits)}: {line}", file=sys.stderr, flush=True)
    return {system: summarise(rows) for system, rows in folds.items()} | {"_data": {"issues": len(issues), "folds": len(splits)}}


def summarise(rows: list[dict]) -> dict:
    out = {key: round(statistics.mean(r[key] for r in rows), 4) for key in ("micro_f1", "jaccard", "macro_f1", "train_seconds")}
    out["micro_f1_stdev"] = round(statistics.stdev(r["micro_f1"] for r in rows), 4) if len(rows) > 1 else 0.0
    out["invalid"] = sum(r["invalid"] for r in rows)
    predict = [r["predict_ms"] for r in rows if r["predict_ms"] is not None]
    out["predict_ms_per_issue"] = round(statistics.mean(predict), 3) if predict else None
    return out


def print_table(results: dict) -> None:
    print(f"\n{'SET':<12} {'SYSTEM':<28} {'MICRO F1':>9} {'±':>6} {'JACCARD':>8} {'MACRO F1':>9} {'INVALID':>8} {'TRAIN S':>8} {'MS/ISSUE':>9}")
    for name, systems in results.items():
        ref = systems[REFERENCES[0]]["micro_f1"]
        for system, r in systems.items():
            if system.startswith("_"):
                continue
            ms = f"{r['predict_ms_per_issue']:.2f}" if r["predict_ms_per_issue"] is not None else "-"
            print(f"{name:<12} {system:<28} {r['micro_f1']:>9.4f} {r['micro_f1_stdev']:>6.3f} {r['jaccard']:>8.4f} "
                  f"{r['macro_f1']:>9.4f} {r['invalid']:>8d} {r['train_seconds']:>8.1f} {ms:>9}  ({r['micro_f1'] - ref:+.3f} vs tf-idf reference)")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocol", choices=["small", "full"], default="small")
    parser.add_argument("--engines", nargs="+", default=["tfidf"], help="engines, each trained as `issuelab train` would")
    parser.add_argument("--sets", nargs="+", choices=SETS, default=SETS)
    parser.add_argument("--set", action="append", default=[], metavar="ENGINE.KEY=VALUE", help="an engine option")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()

    config = Config(labels=[Label("x", "")], train=TrainConfig(multi_label="true"))
    config, settings = set_engine_options(config, args.set)
    results = {name: run_set(name, config, args.engines, args.protocol, args.seed) for name in args.sets}
    print_table(results)
    write_report(args.json, {"protocol": args.protocol, "engines": args.engines, "options": settings,
                             "machine": machine(), "results": results})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

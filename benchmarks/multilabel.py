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
    python benchmarks/multilabel.py --engines ensemble ensemble:embed.label_documents=false  # configurations side by side
    python benchmarks/multilabel.py --engines ensemble ensemble:policy.target_precision=0.9  # a [policy] setting
    python benchmarks/multilabel.py --protocol full --engines tfidf ensemble --json docs/results/multilabel-full.json
    python benchmarks/multilabel.py --engines 'ensemble:ensemble.engines=["tfidf","fewshot"],fewshot.model=encoders/{set}'
        # fewshot with an encoder trained on the other sets (benchmarks/any_label_set.py --encoders encoders)
    python benchmarks/multilabel.py --merge a.json b.json --json all.json --plot docs/multilabel-small-frontier.png
        # runs of the same protocol on different sets (one process each) merged, and the cost/quality frontier drawn

Beside the metrics, each system's cost per fold: training wall and CPU seconds (all threads), milliseconds
per issue when the test fold is labeled in one call, the p50 of labeling one issue per call (embeddings
forgotten first, as a new process would embed them), and the size of the saved run.

Data: $ISSUELAB_DATA/multilabel/{sklearn,mrtk,hf-datasets}/ (default ../shared/data), read in place.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import ROOT, machine, mark_frontier, plot_frontier, set_engine_options, split_options, write_report
from issuelab.compare import directory_bytes, measure_latency
from issuelab.config import Config, Label, TrainConfig
from issuelab.data import Issue
from issuelab.engines import Task
from issuelab.engines.embed import forget_embeddings
from issuelab.engines.folds import out_of_fold_scores
from issuelab.metrics import gold_matrix, score_outputs
from issuelab.policy import PolicyConfig, label_matrix
from issuelab.split import kfold
from issuelab.thresholds import THRESHOLD_GRID
from issuelab.train import fit_labeler

SETS = ["sklearn", "mrtk", "hf-datasets"]
REFERENCES = ["reference: tf-idf", "reference: tf-idf + MiniLM"]
LATENCY_ISSUES = 10  # per fold, labeled one per call


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

        self.engine = EmbedEngine(EmbedOptions(finetune="no", label_documents=False))
        self.engine.fit(train, None, task, seed)

    def predict_scores(self, issues):
        return self.engine.predict_scores(issues)


def reference_outputs(train: list[Issue], test: list[Issue], task: Task, seed: int) -> dict[str, list[str]]:
    """Both references on one split: out-of-fold and test scores of each part computed once, then for
    TF-IDF alone and TF-IDF averaged with MiniLM, one global threshold on the out-of-fold scores of the
    training issues and at least one label per issue."""
    names, gold = task.label_names, gold_matrix(train, task.label_names)
    parts = {}
    for make in (ReferenceTfidf, ReferenceMiniLM):
        oof = out_of_fold_scores(make, train, task, seed, 5)
        model = make()
        model.fit(train, None, task, seed)
        parts[make] = oof, model.predict_scores(test)

    def outputs(oof: np.ndarray, scores: np.ndarray) -> list[str]:
        def micro(threshold) -> float:
            pred = label_matrix(oof, threshold, True, 1, 0)
            return 2 * (pred & gold).sum() / max(1, pred.sum() + gold.sum())

        chosen = label_matrix(scores, max(THRESHOLD_GRID, key=micro), True, 1, 0)
        return [", ".join(n for n, on in zip(names, row) if on) for row in chosen]

    (tf_oof, tf_test), (lm_oof, lm_test) = parts[ReferenceTfidf], parts[ReferenceMiniLM]
    return {REFERENCES[0]: outputs(tf_oof, tf_test), REFERENCES[1]: outputs((tf_oof + lm_oof) / 2, (tf_test + lm_test) / 2)}


def parse_system(spec: str, config: Config, set_name: str = "") -> tuple[str, Config]:
    """ENGINE or ENGINE:ENGINE.KEY=VALUE,...: several configurations of one engine compared in one run;
    policy.KEY=VALUE items set the [policy] (e.g. policy.target_precision=0.9). Commas inside [...] belong
    to a list value (ensemble.engines=["tfidf","fewshot"]); {set} is replaced by the set's name (an
    encoder trained on the other sets: fewshot.model=encoders/{set})."""
    engine, _, options = spec.replace("{set}", set_name).partition(":")
    items = split_options(options)
    policy = {}
    for item in (item for item in items if item.startswith("policy.")):
        key, _, value = item.removeprefix("policy.").partition("=")
        if key not in {f.name for f in dataclasses.fields(PolicyConfig)}:
            raise SystemExit(f"error: {spec}: [policy] has no key {key!r}")
        policy[key] = type(getattr(PolicyConfig(), key))(value)
    config = set_engine_options(config, [item for item in items if not item.startswith("policy.")], engine)[0]
    return engine, dataclasses.replace(config, policy=dataclasses.replace(config.policy, **policy))


# -- the run --------------------------------------------------------------------------------------


def run_set(name: str, config: Config, systems: list[str], protocol: str, seed: int) -> dict:
    labels, issues = load_set(data_dir() / name)
    config = Config(labels=labels, train=config.train, policy=config.policy)
    task = Task(tuple(labels), multi_label=True)
    splits = list(small_folds(issues) if protocol == "small" else full_split(issues))
    configured = {spec: parse_system(spec, config, name) for spec in systems}
    folds: dict[str, list[dict]] = {system: [] for system in systems + REFERENCES}
    for k, (train, eval, test) in enumerate(splits):
        gold = [i.labels for i in test]

        def record(system, outputs, costs):
            folds[system].append(fold_row(score_outputs(system, gold, outputs, task.label_names), costs, outputs))  # noqa: B023 (called at once)

        for system, (engine, system_config) in configured.items():
            started, cpu_started = time.perf_counter(), time.process_time()
            labeler, _ = fit_labeler(system_config, train, eval, engine, seed, task)
            costs = {"train_seconds": time.perf_counter() - started, "train_cpu_seconds": time.process_time() - cpu_started}
            started = time.perf_counter()
            outputs = [p.output for p in labeler.predict(test)]
            costs["predict_ms"] = 1000 * (time.perf_counter() - started) / len(test)
            costs["p50_ms"], costs["run_mb"] = answering_costs(labeler, test)
            record(system, outputs, costs)
        started, cpu_started = time.perf_counter(), time.process_time()
        references = reference_outputs(train + (eval or []), test, task, seed)
        shared = {"train_seconds": time.perf_counter() - started, "train_cpu_seconds": time.process_time() - cpu_started}
        for system, outputs in references.items():
            record(system, outputs, shared)  # both references: one shared time, nothing saved or timed per issue
        line = "  ".join(f"{s} {folds[s][-1]['micro_f1']:.3f}" for s in folds)
        print(f"{name} fold {k + 1}/{len(splits)}: {line}", file=sys.stderr, flush=True)
    return {system: summarise(rows) for system, rows in folds.items()} | {"_data": {"issues": len(issues), "folds": len(splits)}}


def answering_costs(labeler, test: list[Issue]) -> tuple[float, float]:
    """p50 ms of labeling one issue per call, as a new process would (the embeddings this process kept are
    forgotten first), and the saved run's size in MB."""
    forget_embeddings()
    p50 = 1000 * measure_latency(labeler, test, LATENCY_ISSUES)[0]
    with tempfile.TemporaryDirectory() as directory:
        labeler.save(Path(directory))
        return p50, directory_bytes(Path(directory)) / 1e6


def fold_row(m, costs: dict, outputs: list[str]) -> dict:
    return {"micro_f1": m.f1, "jaccard": m.jaccard, "macro_f1": m.macro_f1, "invalid": m.invalid,
            "precision": m.precision, "coverage": sum(bool(o) for o in outputs) / max(1, len(outputs)),
            "predict_ms": None, "p50_ms": None, "run_mb": None} | costs  # fmt: skip


def summarise(rows: list[dict]) -> dict:
    keys = ("micro_f1", "jaccard", "macro_f1", "precision", "coverage", "train_seconds", "train_cpu_seconds")
    out = {key: round(statistics.mean(r[key] for r in rows), 4) for key in keys}
    out["micro_f1_stdev"] = round(statistics.stdev(r["micro_f1"] for r in rows), 4) if len(rows) > 1 else 0.0
    out["invalid"] = sum(r["invalid"] for r in rows)
    for key, name, digits in (("predict_ms", "predict_ms_per_issue", 3), ("p50_ms", "p50_ms", 2), ("run_mb", "run_mb", 2)):
        measured = [r[key] for r in rows if r[key] is not None]
        out[name] = round(statistics.mean(measured), digits) if measured else None
    return out


def print_table(results: dict) -> None:
    def cell(r: dict, key: str, digits: int) -> str:
        return "-" if r.get(key) is None else f"{r[key]:.{digits}f}"  # runs before the cost columns lack some

    print(f"\n{'SET':<12} {'SYSTEM':<44} {'MICRO F1':>9} {'±':>6} {'JACCARD':>8} {'MACRO F1':>9} {'PRECISION':>9} {'COVERAGE':>8} {'INVALID':>8} "
          f"{'TRAIN S':>8} {'CPU S':>7} {'MS/ISSUE':>9} {'P50 MS':>7} {'RUN MB':>7}")  # fmt: skip
    for name, systems in results.items():
        ref = systems[REFERENCES[0]]["micro_f1"]
        for system, r in systems.items():
            if system.startswith("_"):
                continue
            print(f"{name:<12} {system:<44} {r['micro_f1']:>9.4f} {r['micro_f1_stdev']:>6.3f} {r['jaccard']:>8.4f} "
                  f"{r['macro_f1']:>9.4f} {r['precision']:>9.4f} {r['coverage']:>8.3f} {r['invalid']:>8d} {r['train_seconds']:>8.1f} "
                  f"{cell(r, 'train_cpu_seconds', 1):>7} {cell(r, 'predict_ms_per_issue', 2):>9} {cell(r, 'p50_ms', 1):>7} {cell(r, 'run_mb', 1):>7}"
                  f"  ({r['micro_f1'] - ref:+.3f} vs tf-idf reference)")  # fmt: skip


def frontier_rows(results: dict) -> list[dict]:
    """Per system measured on every set: micro F1, training CPU seconds per fold, p50 ms and run MB, each
    the mean over the sets; `frontier` marks those that no system with less training CPU matches in F1."""
    systems = [s for s in next(iter(results.values())) if not s.startswith("_") and s not in REFERENCES]
    rows = []
    for system in systems:
        per_set = [r[system] for r in results.values() if system in r and r[system].get("p50_ms") is not None]
        if len(per_set) == len(results):
            rows.append({"system": system, **{key: round(statistics.mean(r[key] for r in per_set), 4)
                                              for key in ("micro_f1", "train_cpu_seconds", "p50_ms", "run_mb")}})  # fmt: skip
    return mark_frontier(rows, "micro_f1", "train_cpu_seconds")


def merge_reports(paths: list[str]) -> dict:
    """Runs of one protocol and the same systems on different sets (one process per set), as one report."""
    reports = [json.loads(Path(path).read_text(encoding="utf-8")) for path in paths]
    results: dict[str, dict] = {}
    for path, report in zip(paths, reports):
        if (report["protocol"], report["engines"], report["options"]) != (reports[0]["protocol"], reports[0]["engines"], reports[0]["options"]):
            raise SystemExit(f"error: {path}: another protocol, systems or options than {paths[0]}; merge runs of one command")
        if twice := sorted(set(report["results"]) & set(results)):
            raise SystemExit(f"error: {path}: a set measured in two of the runs ({', '.join(twice)})")
        results |= report["results"]
    return reports[0] | {"results": results, "merged_from": paths}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocol", choices=["small", "full"], default="small")
    parser.add_argument("--engines", nargs="+", default=["tfidf"], metavar="ENGINE[:ENGINE.KEY=VALUE,...]",
                        help="systems, each trained as `issuelab train` would, e.g. ensemble:embed.model=all-mpnet-base-v2")
    parser.add_argument("--sets", nargs="+", choices=SETS, default=SETS)
    parser.add_argument("--set", action="append", default=[], metavar="ENGINE.KEY=VALUE", help="an engine option")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="OUT")
    parser.add_argument("--merge", nargs="+", metavar="JSON", help="no run: merge these reports (one command, different sets)")
    parser.add_argument("--plot", metavar="PNG", help="draw mean F1 against training and answering cost here")
    args = parser.parse_args()

    if args.merge:
        report = merge_reports(args.merge)
    else:
        config = Config(labels=[Label("x", "")], train=TrainConfig(multi_label="true"))
        config, settings = set_engine_options(config, args.set)
        results = {name: run_set(name, config, args.engines, args.protocol, args.seed) for name in args.sets}
        report = {"protocol": args.protocol, "engines": args.engines, "options": settings, "machine": machine(), "results": results}
    print_table(report["results"])
    rows = frontier_rows(report["results"])
    if rows:
        print(f"\n{'SYSTEM (mean of the sets)':<48} {'MICRO F1':>9} {'CPU S':>7} {'P50 MS':>7} {'RUN MB':>7}  FRONTIER")
        for r in sorted(rows, key=lambda r: r["train_cpu_seconds"]):
            print(f"{r['system'][:48]:<48} {r['micro_f1']:>9.4f} {r['train_cpu_seconds']:>7.1f} {r['p50_ms']:>7.1f} {r['run_mb']:>7.1f}  {'*' if r['frontier'] else ''}")
    write_report(args.json, report | {"frontier": rows})
    if args.plot:
        results = report["results"]
        plot_frontier(rows, args.plot, f1_key="micro_f1", f1_label=f"micro F1, mean of {', '.join(results)} ({report['protocol']})",
                      train_key="train_cpu_seconds", train_label="training, CPU seconds per fold (log)", name_of=lambda r: r["system"][:48],
                      references={name: statistics.mean(r[name]["micro_f1"] for r in results.values()) for name in REFERENCES})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

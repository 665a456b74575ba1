"""`embed` fine-tuned on the multi-label sets at the 'small' size, its label head started at random or from the
probe (`head_init`): the same folds, seed and encoder for both.

Threshold-free where the benchmark's thresholds would mix in a second effect: label ranking average
precision of the test fold's scores, and micro F1 at the best global threshold on the test fold (the same
rule for both starts, at least one label per issue). A fine-tune per fit makes the 'small' protocol of
`multilabel.py` (six fits a fold, 45 folds) too costly on a CPU; this takes the first folds of draw 0.

    python benchmarks/embed_head_init.py --sets sklearn mrtk --folds 2 --json docs/results/embed-head-init-small.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from common import machine, write_report
from issuelab.engines import Task
from issuelab.engines.embed import EmbedEngine, EmbedOptions
from issuelab.metrics import gold_matrix, micro_f1
from issuelab.policy import label_matrix
from multilabel import SETS, data_dir, load_set, small_folds


def best_global_micro_f1(scores: np.ndarray, gold: np.ndarray) -> float:
    """Micro F1 at the best one threshold of 0.05, 0.10 ... 0.95, at least one label per issue."""
    labels = scores.shape[1]
    return max(micro_f1(label_matrix(scores, t, True, 1, labels), gold) for t in np.arange(0.05, 0.96, 0.05))


def main() -> int:
    from sklearn.metrics import label_ranking_average_precision_score

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", choices=SETS, default=SETS)
    parser.add_argument("--inits", nargs="+", choices=["random", "probe"], default=["random", "probe"])
    parser.add_argument("--folds", type=int, default=2, help="the first N folds of draw 0")
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()

    results: dict = {}
    for name in args.sets:
        labels, issues = load_set(data_dir() / name)
        task = Task(tuple(labels), multi_label=True)
        splits = list(small_folds(issues, draws=(0,)))[: args.folds]
        for init in args.inits:
            rows = []
            for k, (train, _, test) in enumerate(splits):
                started = time.process_time()
                engine = EmbedEngine(EmbedOptions(model=args.model, finetune="yes", head_init=init))
                engine.fit(train, None, task, 0)
                cpu = time.process_time() - started
                scores, gold = engine.predict_scores(test), gold_matrix(test, task.label_names)
                rows.append({"fold": k, "lrap": round(float(label_ranking_average_precision_score(gold, scores)), 4),
                             "best_micro_f1": round(best_global_micro_f1(scores, gold), 4), "train_cpu_seconds": round(cpu, 1)})  # fmt: skip
                print(f"{name} {init} {rows[-1]}", file=sys.stderr, flush=True)
            results.setdefault(name, {})[init] = {
                "folds": rows, **{key: round(statistics.mean(r[key] for r in rows), 4) for key in ("lrap", "best_micro_f1", "train_cpu_seconds")}
            }  # fmt: skip
    print(f"{'set':<12} {'head start':<10} {'LRAP':>7} {'micro F1 (best global threshold)':>34} {'train CPU s':>12}")
    for name, by_init in results.items():
        for init, r in by_init.items():
            print(f"{name:<12} {init:<10} {r['lrap']:>7.4f} {r['best_micro_f1']:>34.4f} {r['train_cpu_seconds']:>12.1f}")
    write_report(args.json, {"machine": machine(), "model": args.model, "folds": args.folds, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""NLBSE'24 issue report classification, the competition's protocol.

One model per repository, trained on its 300 training issues, scored on its 300 test issues by
F1 averaged over bug / feature / question; the cross-repository score is the mean of the five.

    python benchmarks/nlbse24.py --engine tfidf --json docs/results/nlbse24-tfidf.json
    python benchmarks/nlbse24.py --engine ensemble --set 'ensemble.engines=["tfidf","embed","head","head"]' \
        --set 'ensemble.weights=[2,2,1,1]' --set embed.model=all-mpnet-base-v2 --set head.layers=13

The second is the best mix measured (0.8319; about 4 hours on 2 CPU cores). benchmarks/nlbse24_ensemble.py
trains the same members with the same seeds, caches each one's scores and shows the mixes.

Data: $ISSUELAB_DATA/nlbse24/issues_{train,test}.csv (default ../shared/data), from the public
repository nlbse2024/issue-report-classification.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from common import NLBSE_CONFIG, NLBSE_REPOS, machine, nlbse_data_dir, set_engine_options, write_report
from issuelab.config import load_config
from issuelab.importers import import_issues
from issuelab.metrics import score_outputs
from issuelab.train import fit_labeler

PUBLISHED = {  # cross-repo F1 reported by the competition
    "SetFit (all-mpnet-base-v2)": 0.8270,
    "fine-tuned GPT-3.5": 0.8213,
    "RoBERTa-base": 0.7923,
    "fastText": 0.7184,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", default="tfidf")
    parser.add_argument("--config", default=str(NLBSE_CONFIG))
    parser.add_argument("--data", default=nlbse_data_dir())
    parser.add_argument("--repos", nargs="+", default=NLBSE_REPOS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an option of --engine, e.g. --set epochs=1, or of any engine, e.g. --set head.layers=13 (values parsed as JSON when they can be)")  # fmt: skip
    parser.add_argument("--json", metavar="OUT", help="write the results JSON here")
    args = parser.parse_args()

    config = load_config(args.config)
    config, settings = set_engine_options(config, args.set, args.engine)
    data = Path(args.data)
    results, train_seconds, predict_seconds, predicted = {}, 0.0, 0.0, 0
    for repo in args.repos:
        train, _ = import_issues(data / "issues_train.csv", config.label_names, repos=[repo])
        test, _ = import_issues(data / "issues_test.csv", config.label_names, repos=[repo])
        started = time.perf_counter()
        labeler, _ = fit_labeler(config, train, None, args.engine, args.seed)
        train_seconds += time.perf_counter() - started
        started = time.perf_counter()
        predictions = labeler.predict(test)
        predict_seconds += time.perf_counter() - started
        predicted += len(test)
        metrics = score_outputs(repo, [i.labels for i in test], [p.output for p in predictions], config.label_names)
        results[repo] = {
            "f1": round(metrics.macro_f1, 4),
            "per_label_f1": {label: round(c.f1, 4) for label, c in metrics.per_label.items()},
            "train": len(train),
            "test": len(test),
        }
        print(f"{repo:<24} macro F1 {metrics.macro_f1:.4f}", file=sys.stderr)

    cross = statistics.mean(r["f1"] for r in results.values())
    report = {
        "engine": args.engine,
        "repos": results,
        "cross_repo_f1": round(cross, 4),
        "train_seconds": round(train_seconds, 2),
        "predict_ms_per_issue": round(1000 * predict_seconds / predicted, 3),
        "options": settings,
        "machine": machine(),
    }
    width = 40
    print(f"\n{'REPOSITORY':<{width}} {'MACRO F1':>8}")
    for repo, r in results.items():
        print(f"{repo:<{width}} {r['f1']:8.4f}")
    print(f"{'-' * width} {'-' * 8}")
    print(f"{'issuelab ' + args.engine + ' (cross-repo)':<{width}} {cross:8.4f}")
    for name, f1 in PUBLISHED.items():
        print(f"{name + ' (published)':<{width}} {f1:8.4f}")
    print(f"\ntrain: {train_seconds:.1f}s for {len(results)} models; predict: {report['predict_ms_per_issue']:.2f} ms/issue (batch)")
    write_report(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""NLBSE'24: tfidf, fine-tuned embed, and their weighted average, per repository and cross-repo.

Both engines are trained once per repository (its 300 training issues); their single-label scores are
normalised to distributions and averaged with each weight w of tfidf (1 - w of embed) on a grid, so every
mix is scored on the same trained models. The competition gives no eval split, so the table shows the
whole grid; a weight chosen by looking at it is chosen on the test set, and is reported as such.

    python benchmarks/nlbse24_ensemble.py --json docs/results/nlbse24-ensemble.json   # 16 min on 2 cores
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from common import NLBSE_CONFIG, NLBSE_REPOS, machine, nlbse_data_dir, write_report
from issuelab.config import load_config
from issuelab.data import import_issues
from issuelab.engines import create_engine
from issuelab.evaluate import score_outputs

WEIGHTS = [0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 1.0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=nlbse_data_dir())
    parser.add_argument("--repos", nargs="+", default=NLBSE_REPOS)
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()

    config = load_config(NLBSE_CONFIG)
    names = config.label_names
    data = Path(args.data)
    results: dict = {}
    for repo in args.repos:
        train, _ = import_issues(data / "issues_train.csv", names, repos=[repo])
        test, _ = import_issues(data / "issues_test.csv", names, repos=[repo])
        scores, seconds = {}, {}
        for engine in ("tfidf", "embed"):
            started = time.perf_counter()
            model = create_engine(engine, config.engine_options(engine))
            model.fit(train, None, config, 0)
            raw = model.predict_scores(test)
            scores[engine] = raw / raw.sum(axis=1, keepdims=True)
            seconds[engine] = round(time.perf_counter() - started, 1)
        row = {}
        for w in WEIGHTS:
            mixed = w * scores["tfidf"] + (1 - w) * scores["embed"]
            outputs = [names[k] for k in mixed.argmax(axis=1)]
            row[str(w)] = round(score_outputs(repo, [i.labels for i in test], outputs, names).macro_f1, 4)
        results[repo] = {"macro_f1_by_tfidf_weight": row, "seconds": seconds}
        print(f"{repo:<24} " + " ".join(f"{row[str(w)]:.4f}" for w in WEIGHTS) + f"   ({seconds})", file=sys.stderr)

    cross = {str(w): round(statistics.mean(r["macro_f1_by_tfidf_weight"][str(w)] for r in results.values()), 4) for w in WEIGHTS}
    print(f"{'TFIDF WEIGHT':<24} " + " ".join(f"{w:>6.1f}" for w in WEIGHTS))
    for repo, r in results.items():
        print(f"{repo:<24} " + " ".join(f"{r['macro_f1_by_tfidf_weight'][str(w)]:>6.4f}" for w in WEIGHTS))
    print(f"{'cross-repo':<24} " + " ".join(f"{cross[str(w)]:>6.4f}" for w in WEIGHTS))
    write_report(args.json, {"machine": machine(), "weights": WEIGHTS, "repos": results, "cross_repo": cross})
    return 0


if __name__ == "__main__":
    sys.exit(main())

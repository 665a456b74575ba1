"""Active learning by simulation on NLBSE'24: the gold labels play the teacher.

The pool is the 1,500 training issues of the five repositories, the test set their 1,500 test issues
(labels bug / feature / question). Each strategy starts from the same random seed set, then adds the
issues it picks each round; a `tfidf` model is trained on what is labeled and scored on the test set
(macro F1, as the competition). Active (margin, entropy) against random picking, several repeats.

    python benchmarks/active_learning.py --json docs/results/active-learning.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from common import NLBSE_CONFIG, machine, nlbse_data_dir, write_report
from issuelab.annotate.active import active_loop
from issuelab.config import load_config
from issuelab.importers import import_issues


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=nlbse_data_dir())
    parser.add_argument("--seed-size", type=int, default=50)
    parser.add_argument("--step", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--strategies", nargs="+", default=["random", "margin", "entropy"])
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()

    config = load_config(NLBSE_CONFIG)
    data = Path(args.data)
    pool, _ = import_issues(data / "issues_train.csv", config.label_names)
    test, _ = import_issues(data / "issues_test.csv", config.label_names)
    gold = {issue.id: issue.labels for issue in pool}
    unlabeled = [type(issue)(issue.id, issue.title, issue.body, [], dict(issue.extra)) for issue in pool]

    def oracle(issues):  # the teacher: gold labels
        return [type(issue)(issue.id, issue.title, issue.body, gold[issue.id], dict(issue.extra)) for issue in issues]

    curves: dict[str, list[list[dict]]] = {}
    for strategy in args.strategies:
        for repeat in range(args.repeats):
            curve = active_loop(config, unlabeled, test, oracle, seed_size=args.seed_size, step=args.step,
                                rounds=args.rounds, strategy=strategy, seed=repeat)  # fmt: skip
            curves.setdefault(strategy, []).append(curve)
            print(f"{strategy} repeat {repeat}: " + " ".join(f"{r['labeled']}:{r['macro_f1']:.3f}" for r in curve), file=sys.stderr)

    sizes = [row["labeled"] for row in curves[args.strategies[0]][0]]
    table = {s: [round(statistics.mean(c[k]["macro_f1"] for c in runs), 4) for k in range(len(sizes))] for s, runs in curves.items()}
    print(f"{'LABELED':>8} " + " ".join(f"{s.upper():>9}" for s in table))
    for k, size in enumerate(sizes):
        print(f"{size:>8} " + " ".join(f"{table[s][k]:>9.4f}" for s in table))
    report = {"machine": machine(), "pool": len(pool), "test": len(test), "repeats": args.repeats, "labeled": sizes,
              "macro_f1": table, "curves": curves}  # fmt: skip
    write_report(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

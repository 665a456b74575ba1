"""Engines side by side through `issuelab compare`: metrics, CPU latency, size on disk, the report.

Data sets, both built from the NLBSE'24 CSVs in memory (nothing copied):
- `nlbse-multilabel`: all 3,000 issues of the five repositories, each labeled with its type (bug /
  feature / question) and its project (react / tensorflow / vscode / bitcoin / opencv): a
  multi-label task of real issue text with exactly two labels per issue, for cross-validation with
  per-label thresholds.
- `react` (or any NLBSE repository's short name): the competition split, 300 train / 300 test, single-label.

    python benchmarks/compare_engines.py --dataset nlbse-multilabel --folds 5 --engines tfidf embed \\
        --set embed.finetune=no --out docs/results/compare-nlbse-multilabel
    python benchmarks/compare_engines.py --dataset react --engines tfidf embed head --out docs/results/compare-react
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from common import NLBSE_CONFIG, NLBSE_REPOS, machine, nlbse_data_dir, set_engine_options
from issuelab.compare import compare_crossval, compare_on_split
from issuelab.config import Label, load_config
from issuelab.data import write_json
from issuelab.importers import import_issues
from issuelab.report import write_report
from issuelab.tables import format_table

PROJECTS = {repo.split("/")[1]: repo for repo in NLBSE_REPOS}


def multilabel_issues(config, data: Path):
    issues = []
    for repo in NLBSE_REPOS:
        for part in ("issues_train.csv", "issues_test.csv"):
            rows, _ = import_issues(data / part, ["bug", "feature", "question"], repos=[repo])
            for issue in rows:
                issue.labels = issue.labels + [repo.split("/")[1]]
            issues += rows
    config.labels += [Label(name, f"Issues of the {repo} project.") for name, repo in PROJECTS.items()]
    config.train.multi_label = "true"
    config.policy.max_labels, config.policy.min_labels = 0, 1
    return issues


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="react", help=f"nlbse-multilabel, or one of {', '.join(PROJECTS)}")
    parser.add_argument("--data", default=nlbse_data_dir())
    parser.add_argument("--engines", nargs="+", default=["tfidf", "embed"])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--set", action="append", default=[], metavar="ENGINE.KEY=VALUE", help="an engine option")
    parser.add_argument("--out", required=True, help="report directory")
    parser.add_argument("--runs", help="split datasets: keep the trained runs here (default: not kept)")
    args = parser.parse_args()

    config = load_config(NLBSE_CONFIG)
    config, _ = set_engine_options(config, args.set)
    data = Path(args.data)
    if args.dataset == "nlbse-multilabel":
        comparison = compare_crossval(config, multilabel_issues(config, data), args.engines, args.folds)
    elif args.dataset in PROJECTS:
        repo = PROJECTS[args.dataset]
        train, _ = import_issues(data / "issues_train.csv", config.label_names, repos=[repo])
        test, _ = import_issues(data / "issues_test.csv", config.label_names, repos=[repo])
        if args.runs:
            comparison = compare_on_split(config, train, None, test, args.engines, Path(args.runs))
        else:
            with tempfile.TemporaryDirectory() as runs:  # the runs are not kept: the report is
                comparison = compare_on_split(config, train, None, test, args.engines, Path(runs))
    else:
        raise SystemExit(f"--dataset {args.dataset!r}: expected nlbse-multilabel or one of {', '.join(PROJECTS)}")
    files = write_report(comparison, args.out)
    summary = comparison.to_json()
    write_json(files["json"], summary | {"machine": machine(), "command": " ".join(sys.argv), "settings": args.set})
    print(format_table([r.metrics for r in comparison.results]))
    print(f"\n{'engine':<10} {'micro F1':>9} {'macro F1':>9} {'train s':>9} {'p50 ms':>8} {'run MB':>8} {'shared MB':>10}")
    for r in comparison.results:
        print(f"{r.engine:<10} {r.metrics.f1:>9.4f} {r.metrics.macro_f1:>9.4f} {r.train_seconds:>9.1f} "
              f"{r.latency_p50 * 1000:>8.1f} {r.run_bytes / 1e6:>8.2f} {r.shared_bytes / 1e6:>10.1f}")  # fmt: skip
    print(f"recommended: {comparison.recommended} ({comparison.reason})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

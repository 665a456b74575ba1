"""How the tfidf defaults were chosen: 5-fold cross-validation on the NLBSE'24 *training* issues only.

Each variant changes one option from the defaults; the score is macro F1 from 5-fold
cross-validation of each repository's 300 training issues, averaged over the five repositories.
The test issues are never used, so benchmarks/nlbse24.py stays an honest held-out number.

    python benchmarks/tfidf_options.py --json docs/results/tfidf-options.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from common import NLBSE_CONFIG, NLBSE_REPOS, nlbse_data_dir, write_report
from issuelab.config import load_config
from issuelab.crossval import crossval
from issuelab.importers import import_issues

VARIANTS = [
    {}, {"C": 1.0}, {"C": 3.0}, {"C": 30.0}, {"title_repeats": 1}, {"title_repeats": 3},
    {"max_chars": 2000}, {"max_chars": 12000}, {"char_ngrams": [1, 4]}, {"char_ngrams": [3, 6]},
    {"word_ngrams": [1, 1]}, {"min_df": 1}, {"class_weight": "none"},
]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=nlbse_data_dir())
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()

    config = load_config(NLBSE_CONFIG)
    data = {r: import_issues(Path(args.data) / "issues_train.csv", config.label_names, repos=[r])[0] for r in NLBSE_REPOS}
    results = []
    print(f"{'VARIANT':<28} {'CV MACRO F1':>11}  PER REPO")
    for variant in VARIANTS:
        config.train.engine_options = {"tfidf": variant}
        per_repo = [crossval(config, issues, "tfidf", args.folds, progress=False)[0].macro_f1 for issues in data.values()]
        mean = statistics.mean(per_repo)
        results.append({"options": variant, "cv_macro_f1": round(mean, 4), "per_repo": [round(f, 4) for f in per_repo]})
        name = json.dumps(variant) if variant else "defaults"
        print(f"{name:<28} {mean:11.4f}  {' '.join(f'{f:.3f}' for f in per_repo)}", flush=True)
    write_report(args.json, {"folds": args.folds, "repos": NLBSE_REPOS, "variants": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())

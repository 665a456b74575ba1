"""NLBSE'24: how much a fine-tuned member's seed moves the cross-repo F1, read from the scores cache alone.

`nlbse24_ensemble.py` caches each member's test scores per seed and repository (`NAME`, `NAME-seed1`, ...;
trained with `seed=K` or `seeds=N`). This script trains nothing: for each member and each of its cached
seeds it scores the member alone and mixed with `--with` members (normalised scores, equal weights, as the
ensemble benchmark's blind row), then the mean and sample standard deviation over the seeds, and the
member's seeds averaged into one member (what `seeds=N` would report). A seed missing for any repository
is left out of that member's row, and said so; the training seconds are means over the repositories.

    python benchmarks/nlbse24_seeds.py --scores .benchmarks/nlbse24-scores --with tfidf \\
        --member p128e2 --member p256e3 --seeds 6 --json docs/results/nlbse24-mpnet-recipes-gpu.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

from common import NLBSE_CONFIG, NLBSE_REPOS, machine, nlbse_data_dir, write_report
from issuelab.config import load_config
from issuelab.engines.ensemble import normalise_rows
from issuelab.importers import import_issues
from nlbse24_ensemble import cache_file, read_cached, seed_key, top_label_macro_f1


def load_scores(path: Path) -> tuple[np.ndarray, float]:
    """Normalised test scores and training seconds of one cached run."""
    scores, costs = read_cached(path)
    return normalise_rows(scores), costs["train_seconds"]


def seed_spread(cache: Path, gold: dict[str, list], names: list[str], member: str, partners: list[str], seeds: int) -> dict:
    """One member's row: per seed, cross-repo macro F1 alone and with the partners (equal weights)."""
    partner_scores = {repo: [load_scores(cache_file(cache, p, repo))[0] for p in partners] for repo in gold}
    rows, missing, kept = [], [], {repo: [] for repo in gold}
    for seed in range(seeds):
        paths = {repo: cache_file(cache, seed_key(member, seed), repo) for repo in gold}
        if not all(path.exists() for path in paths.values()):
            missing.append(seed)
            continue
        runs = {repo: load_scores(path) for repo, path in paths.items()}
        mixed = {repo: (runs[repo][0] + sum(partner_scores[repo])) / (1 + len(partners)) for repo in gold}
        rows.append({
            "seed": seed,
            "alone": statistics.mean(top_label_macro_f1(r, gold[r], runs[r][0], names) for r in gold),
            "mixed": statistics.mean(top_label_macro_f1(r, gold[r], mixed[r], names) for r in gold),
            "train_seconds": statistics.mean(runs[r][1] for r in gold),
        })  # fmt: skip
        for repo in gold:
            kept[repo].append(runs[repo][0])
    if not rows:
        raise SystemExit(f"{member}: no seed has cached scores for every repository under {cache} "
                         f"(train them with nlbse24_ensemble.py --member '{member}=ENGINE:...,seed=K' --scores {cache})")  # fmt: skip
    averaged = {repo: (sum(kept[repo]) / len(kept[repo]) + sum(partner_scores[repo])) / (1 + len(partners)) for repo in gold}
    spread = lambda key: statistics.stdev(r[key] for r in rows) if len(rows) > 1 else 0.0  # noqa: E731
    return {
        "member": member, "seeds": rows, "missing_seeds": missing,
        "alone_mean": statistics.mean(r["alone"] for r in rows), "alone_sd": spread("alone"),
        "mixed_mean": statistics.mean(r["mixed"] for r in rows), "mixed_sd": spread("mixed"),
        "seeds_averaged_mixed": statistics.mean(top_label_macro_f1(r, gold[r], averaged[r], names) for r in gold),
        "train_seconds": statistics.mean(r["train_seconds"] for r in rows),
    }  # fmt: skip


def rounded(value):
    """Floats to 4 places, inside lists and dicts too (the report's figures)."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    return [rounded(v) for v in value] if isinstance(value, list) else value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=nlbse_data_dir())
    parser.add_argument("--repos", nargs="+", default=NLBSE_REPOS)
    parser.add_argument("--scores", required=True, help="the cache nlbse24_ensemble.py wrote (--scores)")
    parser.add_argument("--member", action="append", required=True, help="a cached member's name (repeatable)")
    parser.add_argument("--with", dest="partners", action="append", default=[], help="a member to mix each seed with (repeatable)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 are looked for")
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error("--seeds must be 1 or more")

    cache = Path(args.scores)
    for partner in args.partners:
        for repo in args.repos:
            if not cache_file(cache, partner, repo).exists():
                parser.error(f"--with {partner}: {cache_file(cache, partner, repo)} is missing (train it with nlbse24_ensemble.py first)")
    names = load_config(NLBSE_CONFIG).label_names
    gold = {repo: [i.labels for i in import_issues(Path(args.data) / "issues_test.csv", names, repos=[repo])[0]] for repo in args.repos}
    rows = [seed_spread(cache, gold, names, member, args.partners, args.seeds) for member in args.member]

    mixed = " + ".join(["M", *args.partners])
    print(f"{'member':<12} {'seeds':>5} {mixed + ' per seed':<50} {'mean':>7} {'sd':>7} {'alone':>7} {'avg of seeds':>12} {'train s':>8}")
    for row in rows:
        per_seed = " ".join(f"{r['mixed']:.4f}" for r in row["seeds"])
        print(f"{row['member']:<12} {len(row['seeds']):>5} {per_seed:<50} {row['mixed_mean']:>7.4f} {row['mixed_sd']:>7.4f} "
              f"{row['alone_mean']:>7.4f} {row['seeds_averaged_mixed']:>12.4f} {row['train_seconds']:>8.1f}")  # fmt: skip
        if row["missing_seeds"]:
            print(f"  {row['member']}: seeds {row['missing_seeds']} left out (not cached for every repository)", file=sys.stderr)
    write_report(args.json, {"machine": machine(), "scores": str(cache), "with": args.partners, "repos": args.repos,
                             "members": [rounded(row) for row in rows]})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

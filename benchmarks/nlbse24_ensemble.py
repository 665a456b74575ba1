"""NLBSE'24: several engines per repository, alone and averaged, cross-repo.

Each member is `NAME=ENGINE[:KEY=VALUE,...]` (engine options as in [train.ENGINE]), trained once per
repository on its 300 training issues; the key `seeds=N` trains it N times (seeds 0..N-1) and averages
its normalised scores, as an `ensemble` run that lists the engine N times does. Test scores are cached
under --scores (one npz per member, seed and repository), so adding a member or re-mixing never
retrains the others. Single-label scores are
normalised to distributions and averaged. The competition gives no eval split, so the mixing weights
are shown on a grid: equal weights are chosen blind, the best grid point is chosen on the test set and
is reported as such.

    python benchmarks/nlbse24_ensemble.py --json docs/results/nlbse24-ensemble.json
    python benchmarks/nlbse24_ensemble.py --member tfidf=tfidf --member mpnet=embed:model=/path/all-mpnet-base-v2
    python benchmarks/nlbse24_ensemble.py --member tfidf=tfidf --member mpnet=embed:model=all-mpnet-base-v2 \
        --member lorahead512=head:layers=13,seeds=2
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from common import NLBSE_CONFIG, NLBSE_REPOS, ROOT, machine, nlbse_data_dir, write_report
from issuelab.config import load_config
from issuelab.engines.ensemble import normalise_rows
from issuelab.engines.registry import create_engine
from issuelab.importers import import_issues
from issuelab.metrics import score_outputs
from issuelab.options import parse_setting
from issuelab.train import make_task

DEFAULT_MEMBERS = ["tfidf=tfidf", "minilm=embed"]


def parse_member(spec: str) -> tuple[str, str, dict, int]:
    name, _, rest = spec.partition("=")
    engine, _, options = rest.partition(":")
    if not name or not engine:
        raise SystemExit(f"--member {spec!r}: expected NAME=ENGINE[:KEY=VALUE,...]")
    settings = dict(parse_setting(pair, "--member") for pair in filter(None, options.split(",")))
    seeds = settings.pop("seeds", 1)
    if not isinstance(seeds, int) or seeds < 1:
        raise SystemExit(f"--member {spec!r}: seeds must be a whole number >= 1")
    return name, engine, settings, seeds


def member_scores(name, engine, options, seeds, repo, data, config, cache: Path) -> tuple[np.ndarray, dict]:
    """The member's normalised test scores, averaged over its seeds; seed 0 is cached as NAME, seed k as NAME-seedK."""
    runs = [seed_scores(name if seed == 0 else f"{name}-seed{seed}", engine, options, seed, repo, data, config, cache)
            for seed in range(seeds)]  # fmt: skip
    info = {"train_seconds": round(sum(seconds for _, seconds, _ in runs), 1), "cached": all(c for _, _, c in runs)}
    return sum(normalise_rows(scores) for scores, _, _ in runs) / seeds, info


def seed_scores(key, engine, options, seed, repo, data, config, cache: Path) -> tuple[np.ndarray, float, bool]:
    path = cache / f"{key}--{repo.replace('/', '--')}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as saved:
            return saved["scores"], float(saved["train_seconds"]), True
    train, _ = import_issues(data / "issues_train.csv", config.label_names, repos=[repo])
    test, _ = import_issues(data / "issues_test.csv", config.label_names, repos=[repo])
    started = time.perf_counter()
    model = create_engine(engine, {**config.engine_options(engine), **options}, config.train.engine_options)
    model.fit(train, None, make_task(config, train), seed)
    train_seconds = time.perf_counter() - started
    scores = model.predict_scores(test)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, scores=scores, train_seconds=train_seconds)
    return scores, train_seconds, False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=nlbse_data_dir())
    parser.add_argument("--repos", nargs="+", default=NLBSE_REPOS)
    parser.add_argument("--member", action="append", help="NAME=ENGINE[:KEY=VALUE,...] (repeatable)")
    parser.add_argument("--scores", default=str(ROOT / ".benchmarks/nlbse24-scores"), help="cache of test scores")
    parser.add_argument("--step", type=float, default=0.1, help="grid step of the mixing weights")
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()

    config = load_config(NLBSE_CONFIG)
    names = config.label_names
    data, cache = Path(args.data), Path(args.scores)
    members = [parse_member(spec) for spec in args.member or DEFAULT_MEMBERS]
    grid_points = int(round(1 / args.step))
    grid = [w for w in itertools.product(range(grid_points + 1), repeat=len(members)) if sum(w) == grid_points]

    per_repo: dict = {}
    for repo in args.repos:
        test, _ = import_issues(data / "issues_test.csv", names, repos=[repo])
        gold = [i.labels for i in test]
        scores, info = {}, {}
        for name, engine, options, seeds in members:
            scores[name], info[name] = member_scores(name, engine, options, seeds, repo, data, config, cache)
            print(f"{repo:<24} {name:<10} {info[name]}", file=sys.stderr)
        mixes = {}
        for weights in grid:
            mixed = sum(w / grid_points * scores[name] for w, (name, *_) in zip(weights, members))
            outputs = [names[k] for k in mixed.argmax(axis=1)]
            mixes[weights] = score_outputs(repo, gold, outputs, names).macro_f1
        per_repo[repo] = {"mixes": mixes, "members": info}

    def cross(weights) -> float:
        return statistics.mean(r["mixes"][weights] for r in per_repo.values())

    member_names = [m[0] for m in members]
    alone = {
        name: tuple(grid_points if j == k else 0 for j in range(len(members))) for k, name in enumerate(member_names)
    }
    equal = tuple(grid_points // len(members) for _ in members) if grid_points % len(members) == 0 else None
    best = max(grid, key=cross)
    rows = {f"{name} alone": w for name, w in alone.items()}
    if equal:
        rows["equal weights (blind)"] = equal
    rows["best grid weights (chosen on test)"] = best

    print(f"{'':<36} " + " ".join(f"{r.split('/')[0][:10]:>10}" for r in per_repo) + f" {'cross-repo':>10}  weights")
    table = {}
    for label, weights in rows.items():
        cells = [per_repo[r]["mixes"][weights] for r in per_repo]
        shown = ", ".join(f"{n} {w / grid_points:.2f}" for n, w in zip(member_names, weights))
        print(f"{label:<36} " + " ".join(f"{c:>10.4f}" for c in cells) + f" {cross(weights):>10.4f}  {shown}")
        table[label] = {"weights": dict(zip(member_names, [w / grid_points for w in weights])),
                        "per_repo": {r: round(c, 4) for r, c in zip(per_repo, cells)},
                        "cross_repo": round(cross(weights), 4)}  # fmt: skip
    write_report(args.json, {
        "machine": machine(), "members": args.member or DEFAULT_MEMBERS, "table": table,
        "train_seconds": {r: {n: v["members"][n]["train_seconds"] for n in member_names} for r, v in per_repo.items()},
    })  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

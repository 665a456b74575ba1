"""NLBSE'24: several engines per repository, alone and averaged, cross-repo.

Each member is `NAME=ENGINE[:KEY=VALUE,...]` (engine options as in [train.ENGINE]), trained once per
repository on its 300 training issues; the key `seeds=N` trains it N times (seeds 0..N-1) and averages
its normalised scores, as an `ensemble` run that lists the engine N times does; `seed=K` trains seed K
alone (cached where `seeds=N` looks for it, so seeds can train in separate processes). Test scores are cached
under --scores (one npz per member, seed and repository), so adding a member or re-mixing never
retrains the others. Single-label scores are
normalised to distributions and averaged. The competition gives no eval split, so the mixing weights
are shown on a grid: equal weights are chosen blind, the best grid point is chosen on the test set and
is reported as such.

Beside the scores, each member's cost: training wall and CPU seconds (all threads), its saved run
reloaded and timed answering one issue per call (p50), the run's size and the base models it loads;
then every equal-weight subset of the members with F1 and cost per repository, the cheapest ones that
no cheaper subset beats marked as the frontier (`--plot PNG` draws it).

    python benchmarks/nlbse24_ensemble.py --json docs/results/nlbse24-ensemble.json
    python benchmarks/nlbse24_ensemble.py --member tfidf=tfidf --member mpnet=embed:model=/path/all-mpnet-base-v2
    python benchmarks/nlbse24_ensemble.py --member tfidf=tfidf --member mpnet=embed:model=all-mpnet-base-v2 \
        --member lorahead512=head:layers=13,seeds=2
    python benchmarks/nlbse24_ensemble.py --member tfidf=tfidf --member minilm0=embed:finetune=no \
        --member lh4=head:layers=13,train_layers=4 --plot docs/nlbse24-frontier.png
    python benchmarks/nlbse24_ensemble.py --member tfidf=tfidf --member xr=embed:model=encoders/{repo},finetune=no
        # {repo}: the held-out repository's short name, e.g. an encoder trained on the others (any_label_set.py)
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from common import (
    NLBSE_CONFIG,
    NLBSE_REPOS,
    ROOT,
    machine,
    mark_frontier,
    nlbse_data_dir,
    plot_frontier,
    split_options,
    write_report,
)
from issuelab.compare import directory_bytes, measure_latency
from issuelab.config import load_config
from issuelab.engines.embed import forget_embeddings
from issuelab.engines.ensemble import normalise_rows
from issuelab.engines.registry import create_engine, engine_class
from issuelab.importers import import_issues
from issuelab.metrics import score_outputs
from issuelab.options import parse_setting
from issuelab.train import make_task

DEFAULT_MEMBERS = ["tfidf=tfidf", "minilm=embed"]


def parse_member(spec: str) -> tuple[str, str, dict, range]:
    name, _, rest = spec.partition("=")
    engine, _, options = rest.partition(":")
    if not name or not engine:
        raise SystemExit(f"--member {spec!r}: expected NAME=ENGINE[:KEY=VALUE,...]")
    settings = dict(parse_setting(pair, "--member") for pair in split_options(options))
    if "seed" in settings:
        seed = settings.pop("seed")
        if not isinstance(seed, int) or seed < 0 or "seeds" in settings:
            raise SystemExit(f"--member {spec!r}: seed must be a whole number >= 0, and not given with seeds")
        return name, engine, settings, range(seed, seed + 1)
    seeds = settings.pop("seeds", 1)
    if not isinstance(seeds, int) or seeds < 1:
        raise SystemExit(f"--member {spec!r}: seeds must be a whole number >= 1")
    return name, engine, settings, range(seeds)


COSTS = ("train_seconds", "train_cpu_seconds", "p50_ms", "run_mb")  # per seed; NaN where not measured
LATENCY_ISSUES = 20


def seed_key(name: str, seed: int) -> str:
    """The cache key of one seed of a member: seed 0 is NAME, seed k NAME-seedK."""
    return name if seed == 0 else f"{name}-seed{seed}"


def cache_file(cache: Path, key: str, repo: str) -> Path:
    return cache / f"{key}--{repo.replace('/', '--')}.npz"


def read_cached(path: Path) -> tuple[np.ndarray, dict]:
    """A cached run's test scores (as the engine gave them) and its COSTS, NaN where not measured."""
    with np.load(path, allow_pickle=False) as saved:
        costs = {k: float(saved[k]) if k in saved else float("nan") for k in COSTS}
        return saved["scores"], costs | {"shared": list(saved["shared"]) if "shared" in saved else []}


def top_label_macro_f1(repo: str, gold: list, scores: np.ndarray, names: list[str]) -> float:
    """Macro F1 of each issue's highest-scoring label (single-label, as the competition scores it)."""
    return score_outputs(repo, gold, [names[k] for k in scores.argmax(axis=1)], names).macro_f1


def member_scores(name, engine, options, seeds: range, repo, data, config, cache: Path) -> tuple[np.ndarray, dict]:
    """The member's normalised test scores, averaged over its seeds; seed 0 is cached as NAME, seed k as NAME-seedK.
    Costs add up over seeds, except the shared base models."""
    runs = [seed_scores(seed_key(name, seed), engine, options, seed, repo, data, config, cache) for seed in seeds]
    info = {key: round(sum(costs[key] for _, costs in runs), 1) for key in COSTS}
    info["shared"] = sorted({path for _, costs in runs for path in costs["shared"]})
    info["cached"] = all(costs["cached"] for _, costs in runs)
    return sum(normalise_rows(scores) for scores, _ in runs) / len(runs), info


def seed_scores(key, engine, options, seed, repo, data, config, cache: Path) -> tuple[np.ndarray, dict]:
    """Test scores and costs of one trained member: training wall and CPU seconds (all threads), the saved
    run reloaded and timed on one issue per call (p50 over 20 test issues, after one warm-up), its size
    and that of the base models it shares."""
    path = cache_file(cache, key, repo)
    options = {k: v.replace("{repo}", repo.split("/")[1]) if isinstance(v, str) else v for k, v in options.items()}  # an encoder per held-out repository
    if path.exists():
        scores, costs = read_cached(path)
        return scores, costs | {"cached": True}
    train, _ = import_issues(data / "issues_train.csv", config.label_names, repos=[repo])
    test, _ = import_issues(data / "issues_test.csv", config.label_names, repos=[repo])
    started, cpu_started = time.perf_counter(), time.process_time()
    model = create_engine(engine, {**config.engine_options(engine), **options}, config.train.engine_options)
    model.fit(train, None, make_task(config, train), seed)
    costs = {"train_seconds": time.perf_counter() - started, "train_cpu_seconds": time.process_time() - cpu_started}
    with tempfile.TemporaryDirectory() as directory:
        model.save(Path(directory))
        loaded = engine_class(engine).load(Path(directory))
        costs["run_mb"] = directory_bytes(Path(directory)) / 1e6
    costs["shared"] = np.array([str(p) for p in loaded.shared_files()], dtype=str)
    # A frozen encoder keeps every text it embedded in this process (test issues of an earlier seed or member
    # included): forgotten first, so that each timed issue is embedded as a new one would be.
    forget_embeddings()
    costs["p50_ms"] = 1000 * measure_latency(SimpleNamespace(predict=loaded.predict_scores), test, LATENCY_ISSUES)[0]
    scores = loaded.predict_scores(test)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, scores=scores, **costs)
    return scores, costs | {"shared": list(costs["shared"]), "cached": False}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=nlbse_data_dir())
    parser.add_argument("--repos", nargs="+", default=NLBSE_REPOS)
    parser.add_argument("--member", action="append", help="NAME=ENGINE[:KEY=VALUE,...] (repeatable)")
    parser.add_argument("--scores", default=str(ROOT / ".benchmarks/nlbse24-scores"), help="cache of test scores")
    parser.add_argument("--step", type=float, default=0.1, help="grid step of the mixing weights")
    parser.add_argument("--json", metavar="OUT")
    parser.add_argument("--plot", metavar="PNG", help="draw F1 against training and answering cost here")
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
            mixes[weights] = top_label_macro_f1(repo, gold, mixed, names)
        per_repo[repo] = {"mixes": mixes, "members": info, "scores": scores, "gold": gold}

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
    frontier = cost_and_quality(per_repo, member_names, names)
    print_frontier(frontier)
    if args.plot:
        plot_frontier(frontier, args.plot, f1_key="cross_repo", f1_label="NLBSE'24 cross-repo macro F1", train_key="train_cpu_minutes",
                      train_label="training, CPU minutes per repository (log)",
                      name_of=lambda r: " + ".join(r["members"]) if r["frontier"] or len(r["members"]) == 1 else None)  # fmt: skip
    write_report(args.json, {
        "machine": machine(), "members": args.member or DEFAULT_MEMBERS, "table": table,
        "costs": {r: {n: {k: v["members"][n][k] for k in COSTS} for n in member_names} for r, v in per_repo.items()},
        "frontier": frontier,
    })  # fmt: skip
    return 0


def cost_and_quality(per_repo: dict, member_names: list[str], names: list[str]) -> list[dict]:
    """Every subset of the members, equal weights: cross-repo F1 beside what it costs per repository (means
    over the repositories of the members' sums): training CPU minutes (all threads) and wall minutes,
    p50 ms to answer one issue (the members answer one after another), run size and the base models it
    loads. `frontier`: no cheaper subset (in training CPU time) scores as high."""
    shared_paths = {path for r in per_repo.values() for n in member_names for path in r["members"][n]["shared"]}
    shared_mb = {path: directory_bytes(Path(path)) / 1e6 for path in shared_paths}  # each base model's directory walked once
    rows = []
    for size in range(1, len(member_names) + 1):
        for subset in itertools.combinations(member_names, size):
            f1 = statistics.mean(top_label_macro_f1(repo, r["gold"], sum(r["scores"][n] for n in subset) / size, names)
                                 for repo, r in per_repo.items())  # fmt: skip
            cost = {key: statistics.mean(sum(r["members"][n][key] for n in subset) for r in per_repo.values()) for key in COSTS}
            shared = {path for r in per_repo.values() for n in subset for path in r["members"][n]["shared"]}
            rows.append({
                "members": list(subset), "cross_repo": round(f1, 4), "train_cpu_minutes": round(cost["train_cpu_seconds"] / 60, 2),
                "train_minutes": round(cost["train_seconds"] / 60, 2), "p50_ms": round(cost["p50_ms"], 1),
                "run_mb": round(cost["run_mb"], 1), "base_models_mb": round(sum(shared_mb[p] for p in shared), 1),
            })  # fmt: skip
    rows.sort(key=lambda row: (row["train_cpu_minutes"], -row["cross_repo"]))
    return mark_frontier(rows, "cross_repo", "train_cpu_minutes")


def print_frontier(rows: list[dict]) -> None:
    print(f"\n{'members (equal weights)':<40} {'F1':>7} {'CPU min':>8} {'wall min':>8} {'p50 ms':>7} {'run MB':>7} {'base MB':>8}  frontier")
    for r in rows:
        print(f"{' + '.join(r['members']):<40} {r['cross_repo']:>7.4f} {r['train_cpu_minutes']:>8.2f} {r['train_minutes']:>8.2f} "
              f"{r['p50_ms']:>7.1f} {r['run_mb']:>7.1f} {r['base_models_mb']:>8.1f}  {'*' if r['frontier'] else ''}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())

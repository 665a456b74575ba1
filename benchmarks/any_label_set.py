"""Any label set: label a repository from its label names and descriptions (zero-shot) and from k labeled
issues per label (few-shot), with an encoder trained on the other repositories only.

Leave-one-out over eight targets: NLBSE'24's five repositories (bug / feature / question, with GitHub's
default descriptions; single-label, macro-F1 on the repository's 300 test issues, k issues drawn from
its 300 training issues) and the three sets of $ISSUELAB_DATA/multilabel/ (their labels.json; micro-F1
on the newest 40% of the issues carrying a benchmark label, k drawn from the oldest 60%). For each target,
`issuelab.cross_repo.train_encoder` fine-tunes MiniLM on all the other targets' issues; then, in the same
run and on the same issues:
- k = 0: MiniLM description similarity (`fewshot`, stock MiniLM, `center = false`, nothing else), and
  `fewshot` with the stock MiniLM and with the cross-repository encoder, given the target's training
  issues without their labels (`issuelab train --unlabeled`: they centre the embeddings);
- k = 1, 2, 5, 10, 20 per label (3 draws): those two `fewshot`, `tfidf` trained on the same issues, and
  the ensemble of `tfidf` and `fewshot` (cross-repository encoder) weighted out of fold.
Every system is trained as `issuelab train` would (thresholds out of fold; with no labeled issue, from
the description scores).

    python benchmarks/any_label_set.py --json docs/results/any-label-set.json --plot docs/any-label-set.png
    python benchmarks/any_label_set.py --targets sklearn mrtk --max-steps 200 --encoders /tmp/encoders --json out.json
    python benchmarks/any_label_set.py --base all-mpnet-base-v2 --shots 0 5 --json out.json   # a larger encoder (GPU)
(with --json, the targets already in OUT under the same options are kept: one target per call adds up.)
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import NLBSE_REPOS, machine, nlbse_data_dir, write_report
from issuelab.config import Config, Label, PolicyConfig, TrainConfig, with_engine_settings
from issuelab.cross_repo import (
    REPORT_FILE,
    EncoderTrainingOptions,
    LabeledSet,
    calibrate_zero_shot,
    train_encoder,
    usable,
)
from issuelab.data import Issue, write_json
from issuelab.engines import Task
from issuelab.engines.embed import EmbedEngine, EmbedOptions
from issuelab.importers import import_issues
from issuelab.metrics import score_outputs
from issuelab.train import fit_labeler
from multilabel import SETS, data_dir, load_set

GITHUB_DEFAULTS = [Label("bug", "Something isn't working"), Label("feature", "New feature or request"),
                   Label("question", "Further information is requested")]  # fmt: skip
SHOTS = [0, 1, 2, 5, 10, 20]
ZERO_SHOT_BASELINE = "description similarity (MiniLM)"
ENSEMBLE = "ensemble: tfidf + fewshot (cross-repo)"


class Target:
    def __init__(self, name: str, labels: list[Label], pool: list[Issue], test: list[Issue], single_label: bool):
        self.name, self.labels, self.pool, self.test, self.single_label = name, labels, pool, test, single_label

    @property
    def everything(self) -> LabeledSet:
        return LabeledSet(self.name, tuple(self.labels), self.pool + self.test)

    @property
    def metric(self) -> str:
        return "macro_f1" if self.single_label else "micro_f1"


def load_targets() -> dict[str, Target]:
    names = [label.name for label in GITHUB_DEFAULTS]
    split = {}
    for part in ("train", "test"):
        split[part], _ = import_issues(Path(nlbse_data_dir()) / f"issues_{part}.csv", names)
    targets = {}
    for repo in NLBSE_REPOS:
        pool, test = ([i for i in split[part] if i.extra.get("repo") == repo] for part in ("train", "test"))
        targets[repo.split("/")[1]] = Target(repo.split("/")[1], GITHUB_DEFAULTS, pool, test, True)
    for name in SETS:
        labels, issues = load_set(data_dir() / name)
        cut = int(len(issues) * 0.6)  # oldest first
        targets[name] = Target(name, labels, issues[:cut], issues[cut:], False)
    return targets


def k_per_label(pool: list[Issue], labels: list[Label], k: int, seed: int) -> list[Issue]:
    """k issues carrying each label (fewer where the pool has fewer), drawn at random; an issue drawn
    for one label counts for its other labels too."""
    rng, chosen = random.Random(seed), {}
    for label in labels:
        carrying = [i for i in pool if label.name in i.labels]
        have = sum(label.name in i.labels for i in chosen.values())
        for issue in rng.sample(carrying, min(len(carrying), max(0, k - have))):
            chosen[issue.id] = issue
    return list(chosen.values())


def score(target: Target, engine: str, settings: list[tuple[str, object]], train: list[Issue], seed: int, context: bool) -> dict:
    multi = "false" if target.single_label else "true"
    policy = PolicyConfig(min_labels=1, max_labels=1 if target.single_label else 3)
    config = with_engine_settings(Config(labels=target.labels, train=TrainConfig(multi_label=multi), policy=policy), settings)
    task = Task(tuple(target.labels), multi_label=not target.single_label)
    started = time.perf_counter()
    unlabeled = [Issue(i.id, i.title, i.body) for i in target.pool] if context else []  # labels unknown: `--unlabeled`
    labeler, _ = fit_labeler(config, train, None, engine, seed, task, unlabeled)
    trained = time.perf_counter() - started
    started = time.perf_counter()
    outputs = [p.output for p in labeler.predict(target.test)]
    predict_ms = 1000 * (time.perf_counter() - started) / len(target.test)
    m = score_outputs(engine, [i.labels for i in target.test], outputs, [label.name for label in target.labels])
    return {"micro_f1": m.f1, "macro_f1": m.macro_f1, "invalid": m.invalid, "train_seconds": trained, "predict_ms": predict_ms}


def cross_repo_encoder(name: str, targets: dict[str, Target], options: EncoderTrainingOptions, directory: Path) -> tuple[Path, dict]:
    """The encoder trained on every target but `name` (reused when `directory` already has it with the same options)."""
    out = directory / name
    others = [t.everything for other, t in targets.items() if other != name]
    if (out / REPORT_FILE).exists():
        report = json.loads((out / REPORT_FILE).read_text(encoding="utf-8"))
        if report["options"] == json.loads(json.dumps(vars(options))):
            if "zero_shot_share" not in report:  # trained before the calibration existed: calibrate it now
                encoder = EmbedEngine(EmbedOptions(model=str(out), max_tokens=options.max_tokens, inference_dtype="float32"))
                encoder.load_frozen()
                report |= calibrate_zero_shot(encoder, [usable(s) for s in others], options.seed)
                write_json(out / REPORT_FILE, report)
            return out, report
    return out, train_encoder(others, out, options, force=True)


def run_target(name: str, targets: dict[str, Target], shots: list[int], draws: int, options, directory: Path) -> dict:
    target = targets[name]
    encoder, report = cross_repo_encoder(name, targets, options, directory)
    print(f"{name}: encoder trained on {', '.join(s['name'] for s in report['sets'])} "
          f"({report['steps']} steps, {report['train_seconds']:.0f}s)", file=sys.stderr, flush=True)  # fmt: skip
    cross = [("fewshot.model", str(encoder))]
    results: dict[str, dict] = {}
    for k in shots:
        systems = {"fewshot (MiniLM)": ("fewshot", [], True), "fewshot (cross-repo encoder)": ("fewshot", cross, True)}
        if k:
            systems["tfidf"] = ("tfidf", [], False)
            systems[ENSEMBLE] = ("ensemble", [("ensemble.engines", ["tfidf", "fewshot"]), *cross], True)
        else:
            systems = {ZERO_SHOT_BASELINE: ("fewshot", [("fewshot.center", False)], False)} | systems
            systems["fewshot (cross-repo encoder, not centred)"] = ("fewshot", [*cross, ("fewshot.center", False)], False)
        rows: dict[str, list[dict]] = {system: [] for system in systems}
        for draw in range(draws if k else 1):
            train = k_per_label(target.pool, target.labels, k, draw) if k else []
            for system, (engine, settings, context) in systems.items():
                rows[system].append(score(target, engine, settings, train, draw, context))
        results[str(k)] = {system: summarise(r, target.metric) for system, r in rows.items()}
        line = "  ".join(f"{s} {r['f1']:.3f}" for s, r in results[str(k)].items())
        print(f"{name} k={k}: {line}", file=sys.stderr, flush=True)
    return {"metric": target.metric, "test_issues": len(target.test), "labels": len(target.labels), "encoder": report, "shots": results}


def summarise(rows: list[dict], metric: str) -> dict:
    out = {"f1": round(statistics.mean(r[metric] for r in rows), 4)}
    out["f1_stdev"] = round(statistics.stdev(r[metric] for r in rows), 4) if len(rows) > 1 else 0.0
    out |= {key: round(statistics.mean(r[key] for r in rows), 4) for key in ("micro_f1", "macro_f1", "train_seconds", "predict_ms")}
    out["invalid"] = sum(r["invalid"] for r in rows)
    return out


def print_table(results: dict) -> None:
    print(f"\n{'TARGET':<12} {'K':>3} {'SYSTEM':<40} {'F1':>7} {'±':>6} {'METRIC':<9} {'INVALID':>7} {'TRAIN S':>8} {'MS/ISSUE':>9}")
    for name, result in results.items():
        for k, systems in result["shots"].items():
            for system, r in systems.items():
                print(f"{name:<12} {k:>3} {system:<40} {r['f1']:>7.4f} {r['f1_stdev']:>6.3f} {result['metric']:<9} "
                      f"{r['invalid']:>7d} {r['train_seconds']:>8.1f} {r['predict_ms']:>9.2f}")  # fmt: skip
    nlbse = [r for name, r in results.items() if r["metric"] == "macro_f1" and "0" in r["shots"]]
    if nlbse:
        for system in nlbse[0]["shots"]["0"]:
            print(f"NLBSE'24 mean of {len(nlbse)} repositories, zero-shot, {system}: "
                  f"{statistics.mean(r['shots']['0'][system]['f1'] for r in nlbse):.4f} macro-F1")  # fmt: skip


def plot(results: dict, path: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4 * min(4, len(results)), 3.2 * ((len(results) + 3) // 4)))
    FigureCanvasAgg(figure)
    for n, (name, result) in enumerate(results.items()):
        axes = figure.add_subplot((len(results) + 3) // 4, min(4, len(results)), n + 1)
        shots = [int(k) for k in result["shots"]]
        for system in ("fewshot (cross-repo encoder)", ENSEMBLE, "fewshot (MiniLM)", "tfidf", ZERO_SHOT_BASELINE):
            points = [(k, result["shots"][str(k)][system]) for k in shots if system in result["shots"][str(k)]]
            if points:
                axes.plot([str(k) for k, _ in points], [p["f1"] for _, p in points], marker="o", label=system)
        axes.set_title(f"{name} ({result['metric'].replace('_', '-')})")
        axes.set_xlabel("labeled issues per label")
        axes.set_ylim(0, 1)
        if n == 0:
            axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    print(f"wrote {path}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    targets = load_targets()
    parser.add_argument("--targets", nargs="+", choices=list(targets), default=list(targets))
    parser.add_argument("--shots", nargs="+", type=int, default=SHOTS, help="labeled issues per label (0: zero-shot)")
    parser.add_argument("--draws", type=int, default=3, help="random draws of the k issues")
    parser.add_argument("--epochs", type=float, default=1.0, help="encoder training: passes over the other targets' issues")
    parser.add_argument("--max-steps", type=int, default=0, help="encoder training: a cap on steps (bounds CPU time)")
    parser.add_argument("--max-tokens", type=int, default=EncoderTrainingOptions.max_tokens, help="encoder training: tokens of each issue")
    parser.add_argument("--base", default=EncoderTrainingOptions.base, help="encoder training: the encoder to start from (all-MiniLM-L6-v2, all-mpnet-base-v2 or a directory)")
    parser.add_argument("--encoders", metavar="DIR", help="keep (and reuse) each target's encoder here")
    parser.add_argument("--json", metavar="OUT")
    parser.add_argument("--plot", metavar="PNG")
    args = parser.parse_args()

    options = EncoderTrainingOptions(base=args.base, epochs=args.epochs, max_steps=args.max_steps, max_tokens=args.max_tokens)
    results = {}
    if args.json and Path(args.json).exists():  # targets run before with the same options are kept (one target per call is fine)
        earlier = json.loads(Path(args.json).read_text(encoding="utf-8"))
        if earlier.get("options") == json.loads(json.dumps(vars(options))) and earlier.get("draws") == args.draws:
            # and scored with a calibrated zero-shot share (those before it used 2 whatever the encoder)
            results = {name: r for name, r in earlier["results"].items() if name not in args.targets and "zero_shot_share" in r["encoder"]}
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(args.encoders or scratch)
        for name in args.targets:
            results[name] = run_target(name, targets, sorted(set(args.shots)), args.draws, options, directory)
            write_report(args.json, {"options": vars(options), "draws": args.draws, "machine": machine(), "results": results})
    print_table(results)
    if args.plot:
        plot(results, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())

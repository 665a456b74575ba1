"""Labeling issues with teacher LLMs: annotate, review, loop."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import IssuelabError
from .common import command, config_flag, json_flag, load, set_flag, write_json_if_asked


def _teachers(args: argparse.Namespace, config):
    from ..annotate.teachers import choose_teachers

    model = args.teacher_model or (args.model if not getattr(args, "active", None) else None)  # --model: the teacher's, unless --active
    return choose_teachers(config, args.teacher or (), args.base_url, model, args.max_retries)


def _cache(args: argparse.Namespace):
    from ..annotate.cache import AnnotationCache
    from ..llm.base_model import cache_dir

    return AnnotationCache(args.cache or cache_dir() / "annotations.sqlite")


def cmd_annotate(args: argparse.Namespace) -> None:
    from ..annotate.run import annotate_into, dry_run
    from ..data import read_issues

    config = load(args)
    issues = read_issues(args.input, require_labels=False)
    teachers, cache, previous = _teachers(args, config), _cache(args), []
    if args.active:
        issues, previous = _active_pick(args, config, issues)
    if args.dry_run:
        return _print_dry_run(dry_run(issues, teachers, cache), args.json)
    outcome = annotate_into(args.out, issues, teachers, cache, config.label_names, min_votes=config.annotate.min_votes,
                            previous=previous, invalid_out=args.invalid_out, concurrency=args.concurrency,
                            max_cost=args.max_cost, max_total_cost=args.max_total_cost)  # fmt: skip
    print(outcome.summary(args.out))
    if outcome.result.budget_stopped:
        print(f"{'--max-cost' if args.max_total_cost is None else '--max-cost/--max-total-cost'} reached: {outcome.result.not_asked} requests not sent; {outcome.left} issues left for a later run", file=sys.stderr)
    outcome.check_failures()
    if len(teachers) > 1:
        _print_agreement(config, outcome.labeled, args.json)


def _active_pick(args: argparse.Namespace, config, issues):
    """--active N: the N issues not yet in --out that the --model run is least sure about, and --out's issues."""
    from ..annotate.active import pick_unlabeled
    from ..data import read_issues
    from ..labeler import Labeler

    if not args.model:
        raise IssuelabError("--active N needs --model RUN_DIR: the run whose uncertainty picks the issues")
    previous = read_issues(args.out, config.label_names) if Path(args.out).exists() else []
    picked, pool = pick_unlabeled(Labeler.load(args.model), issues, previous, args.active, args.strategy)
    print(f"--active: {len(picked)} of {pool} unlabeled issues picked by {args.strategy}", file=sys.stderr)
    return picked, previous


def _print_dry_run(rows, json_path: str | None) -> None:
    from ..annotate.teachers import CHARS_PER_TOKEN

    print(f"{'TEACHER':<20} {'REQUESTS':>9} {'CACHED':>7} {'PROMPT TOK':>11} {'ANSWER TOK':>11} {'COST':>10}")
    for r in rows:
        print(f"{r['teacher']:<20} {r['requests']:>9} {r['cached']:>7} {r['prompt_tokens']:>11} {r['completion_tokens']:>11} ${r['cost']:>9.4f}")
    total = sum(r["cost"] for r in rows)
    print(f"estimated total ${total:.4f} (tokens estimated at {CHARS_PER_TOKEN} characters each; answers at their typical length)")
    write_json_if_asked({"dry_run": rows, "estimated_cost": total}, json_path)


def _print_agreement(config, labeled, json_path: str | None) -> None:
    from ..annotate.consensus import agreement_report

    report = agreement_report([issue.extra["teachers"] for issue in labeled], config.label_names)
    pairs = ", ".join(f"{k} {v}" for k, v in report["pairwise_jaccard"].items())
    low = sum(issue.extra.get("agreement", 1) < config.annotate.review_below for issue in labeled)
    print(f"agreement (pairwise Jaccard): {pairs}; {low} issues under {config.annotate.review_below} "
          "(`issuelab review export` sends them to people)")  # fmt: skip
    write_json_if_asked(report, json_path)


def cmd_review(args: argparse.Namespace) -> None:
    from ..annotate.review import apply_review, export_review, read_review
    from ..data import LabelSet, iter_jsonl, read_issues, write_jsonl

    config = load(args)
    if args.action == "export":
        below = config.annotate.review_below if args.below is None else args.below
        n = export_review([obj for _, obj in iter_jsonl(args.input)], args.out, below)
        print(f"{args.out}: {n} issues with teacher agreement under {below}; edit the labels column, then `issuelab review import`")
        return
    if not args.review:
        raise IssuelabError("review import needs --review FILE (the edited export)")
    decisions = read_review(args.review, LabelSet(config.label_names, config.aliases))
    merged, applied = apply_review(read_issues(args.input, config.label_names), decisions, args.review)
    write_jsonl(args.out, merged)
    print(f"{args.out}: {applied} issues take the reviewers' labels (source: human)")


def cmd_loop(args: argparse.Namespace) -> None:
    from ..annotate.active import active_loop
    from ..annotate.run import BudgetedTeachers
    from ..data import read_issues, write_jsonl

    config = load(args)
    pool, eval_issues = read_issues(args.input, require_labels=False), read_issues(args.eval, config.label_names)
    teachers = BudgetedTeachers(_teachers(args, config), _cache(args), config.label_names, min_votes=config.annotate.min_votes,
                                concurrency=args.concurrency, max_cost=args.max_cost)  # fmt: skip

    def on_round(row, labeler, labeled):
        write_jsonl(args.out, labeled)
        print(f"round {row['round']}: {row['labeled']} labeled, eval micro F1 {row['micro_f1']:.4f} "
              f"(macro {row['macro_f1']:.4f}), cost so far ${teachers.spent:.4f}")  # fmt: skip

    curve = active_loop(config, pool, eval_issues, teachers, seed_size=args.seed_size, step=args.step, rounds=args.rounds,
                        strategy=args.strategy, target_f1=args.target_f1, on_round=on_round)  # fmt: skip
    write_json_if_asked({"curve": curve, "cost": teachers.spent}, args.json)


def _teacher_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--teacher", action="append", metavar="NAME", help="a [[teachers]] name (repeatable; default: all)")
    p.add_argument("--base-url", help="an ad-hoc OpenAI-compatible teacher: its base URL (key from OPENAI_API_KEY)")
    p.add_argument("--teacher-model", help="the ad-hoc teacher's model")
    p.add_argument("--cache", help="SQLite answer cache (default $ISSUELAB_CACHE/annotations.sqlite)")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    p.add_argument("--max-cost", type=float, metavar="USD", help="stop sending before the cost would pass this")
    p.add_argument("--max-total-cost", type=float, metavar="USD",
                   help="the same for the cache's total over all runs (requests of runs that died included)")  # fmt: skip
    p.add_argument("--max-retries", type=int, default=6, help="retries of a request on 429/5xx/timeouts (default 6)")


def add_parsers(sub) -> None:
    _add_annotate(sub)
    p = command(sub, "review", cmd_review, "Send low-agreement issues to people (export) and apply their labels (import).",
                "examples:\n  issuelab review export --in work/labeled.jsonl --out review.csv\n"
                "  issuelab review import --in work/labeled.jsonl --review review.csv --out work/final.jsonl")  # fmt: skip
    config_flag(p)
    p.add_argument("action", choices=["export", "import"])
    p.add_argument("--in", dest="input", required=True, help="labeled JSONL from annotate")
    p.add_argument("--out", required=True, help="export: review file (.csv or .jsonl); import: labeled JSONL to write")
    p.add_argument("--below", type=float, help="export: agreement threshold (default [annotate] review_below)")
    p.add_argument("--review", help="import: the edited review file")
    _add_loop(sub)


def _add_annotate(sub) -> None:
    p = command(sub, "annotate", cmd_annotate, "Label issues with teacher LLMs (OpenAI-compatible), cached and resumable.",
                "examples:\n  issuelab annotate --in work/issues.jsonl --out work/labeled.jsonl --dry-run\n"
                "  issuelab annotate --in work/issues.jsonl --out work/labeled.jsonl --max-cost 5\n"
                "  issuelab annotate --in pool.jsonl --out labeled.jsonl --base-url http://localhost:11434/v1 --model qwen3\n"
                "  issuelab annotate --in pool.jsonl --out labeled.jsonl --active 50 --model runs/tfidf")  # fmt: skip
    config_flag(p)
    p.add_argument("--in", dest="input", required=True, help="issues JSONL (labels not needed)")
    p.add_argument("--out", required=True, help="labeled JSONL to write (with --active: merged into)")
    p.add_argument("--model", help="the ad-hoc teacher's model with --base-url; with --active, the RUN_DIR")
    _teacher_flags(p)
    p.add_argument("--dry-run", action="store_true", help="estimate requests, tokens and cost; send nothing")
    p.add_argument("--invalid-out", help="issues no teacher answered validly (default: OUT.invalid.jsonl)")
    p.add_argument("--active", type=int, metavar="N", help="label only the N issues the --model run is least sure about")
    p.add_argument("--strategy", default="margin", choices=["margin", "entropy", "random"], help="for --active")
    json_flag(p, "the agreement report (or dry-run estimate)")


def _add_loop(sub) -> None:
    p = command(sub, "loop", cmd_loop, "Active learning: rounds of label (teachers) -> train -> pick the least sure issues.",
                "example: issuelab loop --in pool.jsonl --eval eval.jsonl --out labeled.jsonl --seed-size 50 --step 50 --rounds 6 --max-cost 3")  # fmt: skip
    config_flag(p)
    p.add_argument("--in", dest="input", required=True, help="unlabeled issues JSONL (the pool)")
    p.add_argument("--eval", required=True, help="labeled issues JSONL to measure each round on")
    p.add_argument("--out", required=True, help="labeled JSONL, rewritten after each round")
    p.add_argument("--model", help="the ad-hoc teacher's model with --base-url")
    _teacher_flags(p)
    set_flag(p)
    p.add_argument("--seed-size", type=int, default=50, help="issues labeled at random before the first round")
    p.add_argument("--step", type=int, default=50, help="issues picked per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--strategy", default="margin", choices=["margin", "entropy", "random"])
    p.add_argument("--target-f1", type=float, help="stop once eval micro F1 reaches this")
    json_flag(p, "the learning curve")

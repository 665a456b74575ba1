"""Scoring models by the seed's rules: evaluate."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import IssuelabError
from .common import command, config_flag, json_flag, load, pairs, write_json_if_asked


def cmd_evaluate(args: argparse.Namespace) -> None:
    from ..data import read_issues, write_jsonl
    from ..evaluate import evaluate_base_model, evaluate_predictions, evaluate_run
    from ..labeler import Labeler
    from ..metrics import metrics_json
    from ..tables import format_per_label_table, format_table

    _check_modes(args)
    config = load(args) if args.base_model or args.pred else None  # a run carries its own label set
    models = []
    if args.base_model:  # the seed's "base model" column: zero-shot, unconstrained, the config's prompt
        models.append(evaluate_base_model(config, read_issues(args.data, config.label_names), args.base_model))
    for name, path in pairs(args.pred, "--pred").items():  # scored against the config's label set
        models.append(evaluate_predictions(name, path, config.label_names))
    for run_dir in args.model or []:
        labeler = Labeler.load(run_dir)
        metrics, records = evaluate_run(labeler, read_issues(args.data, labeler.label_names), Path(run_dir).name, args.unconstrained)
        if args.out:
            write_jsonl(args.out, records)
        models.append(metrics)
    print(format_table(models))
    for m in models:
        calibration = f" (expected calibration error of its scores: {m.ece:.3f})" if m.ece is not None else ""
        print(f"\n{m.name}{calibration}:\n{format_per_label_table(m)}")
    write_json_if_asked(metrics_json(models), args.json)


def _check_modes(args: argparse.Namespace) -> None:
    if not (args.base_model or args.pred or args.model):
        raise IssuelabError("nothing to evaluate: give --pred NAME=FILE, --model RUN_DIR --data FILE, or --base-model")
    if args.base_model and not args.data:
        raise IssuelabError("--base-model needs --data FILE: the labeled issues to answer and score")
    if args.model and not args.data:
        raise IssuelabError("--model needs --data FILE: the labeled issues to predict and score")
    if args.out and len(args.model or []) > 1:
        raise IssuelabError("--out takes the predictions of one --model; run evaluate once per model")


def add_parsers(sub) -> None:
    p = command(sub, "evaluate", cmd_evaluate, "Score predictions with the seed's metrics; compare models side by side.",
                "examples:\n  issuelab evaluate --pred base=base.jsonl --pred fine_tuned=ft.jsonl --json metrics.json\n"
                "  issuelab evaluate --model runs/tfidf --data work/splits/test.jsonl")  # fmt: skip
    config_flag(p)
    p.add_argument("--pred", action="append", metavar="NAME=FILE", help="predictions JSONL (gold labels + output)")
    p.add_argument("--model", action="append", metavar="RUN_DIR", help="a run directory to predict --data with")
    p.add_argument("--data", help="labeled dataset JSONL for --model")
    p.add_argument("--out", help="with --model: also write its predictions JSONL here")
    p.add_argument("--unconstrained", action="store_true",
                   help="lora runs: score raw generations as the seed did, instead of constrained decoding")
    p.add_argument("--base-model", metavar="MODEL",
                   help="also score a base LLM zero-shot and unconstrained on --data (e.g. gemma3-270m)")  # fmt: skip
    json_flag(p)

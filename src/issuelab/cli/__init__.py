"""`issuelab` command line: one thin command per pipeline stage, each stage's commands in one module
beside their flags. A command reads its inputs, makes one library call and prints.

    prepare    init, fetch, import, split        labeled issues in the dataset JSONL
    annotate   annotate, review, loop            labels from teacher LLMs (cached, budgeted) and people
    train      train, crossval, compare,         run directories, and how good they are;
               train-encoder                     an encoder across repositories (fewshot)
    evaluate   evaluate                          the seed's metrics for runs, predictions, base models
    predict    predict                           label one issue or a JSONL batch
    github     action, backtest, feedback, serve the GitHub Action, a dry run on history, corrections, the service

Every module imports the library inside its commands, so that `issuelab --help` stays instant.
"""

from __future__ import annotations

import argparse
import sys

from .._version import __version__
from ..errors import IssuelabError
from . import annotate, evaluate, github, predict, prepare, train

STAGES = (prepare, annotate, train, evaluate, predict, github)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="issuelab", description="Label GitHub issues with small, fast models.")
    parser.add_argument("--version", action="version", version=f"issuelab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for stage in STAGES:
        stage.add_parsers(sub)
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

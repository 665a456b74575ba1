"""Getting labeled issues: init, fetch, import, split."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import IssuelabError
from .common import api_flag, command, config_flag, load, pairs


def cmd_init(args: argparse.Namespace) -> None:
    from ..config_file import repo_labels, starter_config
    from ..data import atomic_write

    path = Path(args.path)
    if path.exists() and not args.force:
        raise IssuelabError(f"{path}: already exists; pass --force to overwrite it")
    labels, source = None, "a starter label set"
    if args.repo and not args.no_fetch:  # the repository's own labels and descriptions
        from ..github.client import GitHubClient, check_repo, token_from_env

        labels, skipped = repo_labels(GitHubClient(args.api_url, token_from_env()).labels(check_repo(args.repo)))
        if skipped:
            print(f"skipped labels with a comma or surrounding spaces in the name: {skipped}", file=sys.stderr)
        if not labels:
            raise IssuelabError(f"{args.repo} has no usable labels; run with --no-fetch and edit [labels] by hand")
        source = f"{len(labels)} labels of {args.repo}"
    atomic_write(path, lambda handle: handle.write(starter_config(args.repo or "owner/name", labels)))
    print(f"wrote {path} with {source}: review [labels] (descriptions guide the models), then `issuelab import` or `issuelab fetch`")


def cmd_fetch(args: argparse.Namespace) -> None:
    from ..github.client import GitHubClient, token_from_env
    from ..github.fetch import fetch_issues

    token = token_from_env()
    if not token:
        print("no GITHUB_TOKEN or GH_TOKEN: unauthenticated requests are limited to 60 an hour", file=sys.stderr)
    counts = fetch_issues(GitHubClient(args.api_url, token), args.repo, args.out, since=args.since, include_prs=args.include_prs)
    prs = f", {counts['skipped_prs']} pull requests skipped" if counts["skipped_prs"] else ""
    print(f"{args.out}: {counts['total']} issues ({counts['new']} new, {counts['updated']} updated{prs})")


def cmd_import(args: argparse.Namespace) -> None:
    from ..data import write_jsonl
    from ..importers import import_files

    config = load(args)
    issues = import_files(
        args.inputs, config.label_names, mapping=pairs(args.map, "--map"), label_sep=args.label_sep,
        aliases=config.aliases | pairs(args.alias, "--alias"), drop_unknown=args.drop_unknown, repos=args.repo or (),
        fmt=args.format, labeled_only=args.labeled_only,
    )  # fmt: skip
    write_jsonl(args.out, issues)
    print(f"imported {len(issues)} issues into {args.out}")


def cmd_split(args: argparse.Namespace) -> None:
    from ..data import read_issues
    from ..split import write_split

    config = load(args)
    issues = read_issues(args.input, config.label_names)
    seed = config.train.seed if args.seed is None else args.seed
    manifest = write_split(args.input, issues, config.label_names, args.out, args.sizes, seed, force=args.force)
    counts = ", ".join(f"{name} {s['examples']}" for name, s in manifest["splits"].items())
    print(f"split {len(issues)} issues (seed {seed}): {counts} -> {args.out}")


def add_parsers(sub) -> None:
    p = command(sub, "init", cmd_init, "Write a commented starter config; with --repo, the repository's labels.",
                "example: issuelab init --repo nebari-dev/nebari")  # fmt: skip
    p.add_argument("path", nargs="?", default="issuelab.toml")
    p.add_argument("--repo", help="OWNER/NAME: take [labels] (names and descriptions) from this repository")
    p.add_argument("--no-fetch", action="store_true", help="with --repo: write the starter labels, ask GitHub nothing")
    api_flag(p)
    p.add_argument("--force", action="store_true", help="overwrite an existing file")

    p = command(sub, "fetch", cmd_fetch, "Fetch a repository's issues into dataset JSONL (incremental; token from GITHUB_TOKEN).",
                "example: issuelab fetch --repo nebari-dev/nebari --out work/issues.jsonl\n"
                "Run it again to update the file: only issues changed since are asked for.")  # fmt: skip
    p.add_argument("--repo", required=True, help="OWNER/NAME")
    p.add_argument("--out", required=True, help="dataset JSONL to create or update")
    p.add_argument("--since", help="only issues updated at or after this ISO 8601 time (default: newest in --out)")
    p.add_argument("--include-prs", action="store_true", help="keep pull requests too")
    api_flag(p)
    _add_import(sub)

    p = command(sub, "split", cmd_split, "Split a dataset into train/eval/test (seeded, stratified).",
                "example: issuelab split work/issues.jsonl --out work/splits --sizes 0.8 0.1 0.1")  # fmt: skip
    config_flag(p)
    p.add_argument("input", help="dataset JSONL")
    p.add_argument("--out", required=True, help="directory for train/eval/test.jsonl and manifest.json")
    p.add_argument("--sizes", nargs=3, type=float, default=[0.8, 0.1, 0.1], metavar=("TRAIN", "EVAL", "TEST"))
    p.add_argument("--seed", type=int, help="default: [train] seed of the config")
    p.add_argument("--force", action="store_true", help="replace a split already in --out")


def _add_import(sub) -> None:
    p = command(sub, "import", cmd_import, "Import issues from CSV or JSONL into the dataset JSONL format.",
                "example: issuelab import --config examples/nlbse24/issuelab.toml \\\n"
                "    ../shared/data/nlbse24/issues_train.csv --repo facebook/react --out work/issues.jsonl")  # fmt: skip
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

"""What every stage's commands share: the subcommand factory, common flags (--config, --set,
--api-url, --json) and reading them."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import IssuelabError


def command(sub, name: str, func, help: str, epilog: str) -> argparse.ArgumentParser:
    """A subcommand whose --help is its description and an example."""
    p = sub.add_parser(name, help=help, description=help, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=func)
    return p


def config_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="issuelab.toml", help="project config (default: issuelab.toml)")


def set_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="append", default=[], metavar="ENGINE.KEY=VALUE",
                   help="an engine option over [train.ENGINE] of the config, e.g. tfidf.C=3 or lora.max_steps=20 "
                        "(values are JSON: numbers, true/false, [1, 2]; repeatable)")  # fmt: skip


def api_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--api-url", help="GitHub API URL (default $GITHUB_API_URL or https://api.github.com)")


def json_flag(p: argparse.ArgumentParser, what: str = "the metrics JSON") -> None:
    p.add_argument("--json", metavar="OUT", help=f"write {what} here")


def load(args: argparse.Namespace):
    """The config of --config, with the engine options of --set (a KEY without ENGINE. is the option of
    the command's --engine, or of [train] engine)."""
    from ..config import load_config, with_engine_settings
    from ..options import parse_setting

    config = load_config(args.config)
    settings = [parse_setting(item) for item in getattr(args, "set", None) or []]
    if not settings:
        return config
    engine = (args.engine or config.train.engine) if hasattr(args, "engine") else None
    return with_engine_settings(config, settings, engine)


def pairs(values: list[str] | None, flag: str) -> dict[str, str]:
    """KEY=VALUE flags as a dict of strings."""
    out = {}
    for value in values or []:
        key, sep, rest = value.partition("=")
        if not sep or not key or not rest:
            raise IssuelabError(f"{flag} {value!r}: expected KEY=VALUE")
        out[key] = rest
    return out


def write_json_if_asked(obj: Any, path: str | None) -> None:
    if path:
        from ..data import write_json

        write_json(path, obj)
        print(f"wrote {path}", file=sys.stderr)


def github_policy(args: argparse.Namespace):
    """The GitHub side's policy: [policy] of --config when given, else the run's; --dry-run on top.
    None when neither flag is given: the run's own, read when the run is loaded."""
    from ..config import load_config
    from ..labeler import Labeler
    from ..policy import resolve_policy

    if not (args.config or args.dry_run):
        return None
    override = load_config(args.config).policy if args.config else None
    return resolve_policy(override or Labeler.load_policy(args.model), override, args.dry_run)

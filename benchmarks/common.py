"""Shared by the benchmark scripts: where the NLBSE'24 data is, the machine, writing a report."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

from issuelab.data import write_json

ROOT = Path(__file__).resolve().parents[1]
NLBSE_REPOS = ["facebook/react", "tensorflow/tensorflow", "microsoft/vscode", "bitcoin/bitcoin", "opencv/opencv"]
NLBSE_CONFIG = ROOT / "examples/nlbse24/issuelab.toml"


def nlbse_data_dir() -> str:
    """$ISSUELAB_DATA/nlbse24, ISSUELAB_DATA defaulting to ../shared/data beside the repository."""
    return os.path.join(os.environ.get("ISSUELAB_DATA", ROOT.parent / "shared/data"), "nlbse24")


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def write_report(path: str | None, report: dict) -> None:
    if path:
        write_json(path, report)
        print(f"wrote {path}", file=sys.stderr)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def parse_setting(item: str, flag: str = "--set") -> tuple[str, object]:
    """KEY=VALUE from the command line; the value parsed as JSON when it can be (numbers, booleans)."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise SystemExit(f"{flag} {item!r}: expected KEY=VALUE")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def set_engine_options(config, items: list[str], engine: str | None = None) -> dict:
    """--set ENGINE.KEY=VALUE (or KEY=VALUE for `engine`) written into the config's engine options;
    returns the settings as given, for the report."""
    settings = dict(parse_setting(item) for item in items)
    for key, value in settings.items():
        owner, _, option = key.rpartition(".")
        if not (owner or engine):
            raise SystemExit(f"--set {key}=...: expected ENGINE.KEY=VALUE")
        config.train.engine_options.setdefault(owner or engine, {})[option] = value
    return settings

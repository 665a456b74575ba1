"""Shared by the benchmark scripts: where the NLBSE'24 data is, the machine, writing a report."""

from __future__ import annotations

import os
import platform
import re
import sys
from pathlib import Path

from issuelab.config import with_engine_settings
from issuelab.data import write_json
from issuelab.errors import ConfigError
from issuelab.options import parse_setting

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


def split_options(options: str) -> list[str]:
    """KEY=VALUE,KEY=VALUE,... as items; a comma inside [...] belongs to a list value (engines=["tfidf","embed"])."""
    return [item for item in re.split(r",(?![^\[]*\])", options) if item]


def set_engine_options(config, items: list[str], engine: str | None = None):
    """--set ENGINE.KEY=VALUE (or KEY=VALUE for `engine`), checked by the engine's options as the CLI's
    --set is; returns (the config with them, the settings as given, for the report)."""
    settings = [parse_setting(item) for item in items]
    try:
        return with_engine_settings(config, settings, engine), dict(settings)
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None

"""Shared by the benchmark scripts: where the NLBSE'24 data is, the machine, writing a report, the
cost/quality frontier."""

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


def mark_frontier(rows: list[dict], f1_key: str, cost_key: str) -> list[dict]:
    """Marks `frontier` on the rows that no cheaper row (in `cost_key`) matches in F1; their order is kept."""
    best = -1.0
    for row in sorted(rows, key=lambda row: (row[cost_key], -row[f1_key])):
        row["frontier"], best = row[f1_key] > best, max(best, row[f1_key])
    return rows


def plot_frontier(rows: list[dict], path: str, *, f1_key: str, f1_label: str, train_key: str, train_label: str,
                  name_of, references: dict[str, float] | None = None) -> None:  # fmt: skip
    """F1 against training cost and against answering time per issue (`p50_ms`), the frontier joined;
    `name_of(row)` is a point's label (None: unlabeled); `references` are drawn as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, key, label in ((axes[0], train_key, train_label), (axes[1], "p50_ms", "answering one issue, p50 ms (log)")):
        ax.scatter([r[key] for r in rows], [r[f1_key] for r in rows], s=14, color="0.6")
        if key == train_key:
            front = sorted((r for r in rows if r["frontier"]), key=lambda r: r[key])
            ax.plot([r[key] for r in front], [r[f1_key] for r in front], "o-", color="C0", label="frontier (training cost)")
        for r in rows:
            if name_of(r):
                ax.annotate(name_of(r), (r[key], r[f1_key]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        for n, (name, value) in enumerate((references or {}).items()):
            ax.axhline(value, color=f"C{n + 1}", ls="--", lw=1, label=name)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f1_label)
    axes[0].legend(loc="upper left" if references else "lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}", file=sys.stderr)

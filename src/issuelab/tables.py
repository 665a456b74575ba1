"""Text tables of metrics: the seed's side-by-side table and the per-label table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .metrics import ModelMetrics


def _pct(value: float) -> str:
    return f"{value * 100:.2f}%"


def _row(cells: Sequence[str], widths: Sequence[int]) -> str:
    return " ".join(f"{cell:<{width}}" for cell, width in zip(cells, widths)).rstrip()


def format_table(models: Sequence[ModelMetrics]) -> str:
    """The seed's side-by-side table; with two or more models, improvement over the first."""
    base = models[0]
    others = models[1:]
    improvement_headers = ["IMPROVEMENT"] if len(models) == 2 else [f"VS {base.name.upper()}: {m.name.upper()}" for m in others]
    widths = [30] + [25] * len(models) + [max(15, len(h)) for h in improvement_headers]
    header = ["METRIC"] + [m.name.upper() for m in models] + (improvement_headers if others else [])
    lines = [_row(header, widths), _row(["-" * w for w in widths[: len(header)]], widths)]

    def delta(value: float, base_value: float) -> str:
        return f"{(value - base_value) * 100:+.2f}%"

    rows: list[tuple[str, Any, Any]] = [
        ("Jaccard Similarity", lambda m: f"{_pct(m.jaccard)} ({m.intersection}/{m.union})", lambda m: m.jaccard),
        ("Micro-Avg Precision", lambda m: f"{_pct(m.precision)} ({m.intersection}/{m.predicted})", lambda m: m.precision),
        ("Micro-Avg Recall", lambda m: f"{_pct(m.recall)} ({m.intersection}/{m.gold})", lambda m: m.recall),
        ("Micro-Avg F1", lambda m: _pct(m.f1), lambda m: m.f1),
        ("Macro-Avg F1", lambda m: _pct(m.macro_f1), lambda m: m.macro_f1),
    ]
    for title, show, value in rows:
        cells = [title] + [show(m) for m in models] + [delta(value(m), value(base)) for m in others]
        lines.append(_row(cells, widths))
    count_rows = [
        ("Invalid outputs", lambda m: f"{m.invalid}/{m.examples}", lambda m: m.invalid),
        ("Out-of-set outputs", lambda m: f"{m.out_of_set}/{m.valid}", lambda m: m.out_of_set),
        ("Labels per example", lambda m: f"{m.labels_per_example:.2f}", lambda m: m.labels_per_example),
    ]
    for title, show, value in count_rows:
        diffs = [f"{value(m) - value(base):+.2f}" if isinstance(value(m), float) else f"{value(m) - value(base):+d}" for m in others]
        lines.append(_row([title] + [show(m) for m in models] + diffs, widths))
    return "\n".join(lines)


def format_per_label_table(metrics: ModelMetrics) -> str:
    width = max([5] + [len(label) for label in metrics.per_label])
    lines = [f"{'LABEL':<{width}}  PRECISION  RECALL     F1  SUPPORT", "-" * (width + 35)]
    for label, c in metrics.per_label.items():
        lines.append(f"{label:<{width}}  {c.precision:9.3f}  {c.recall:6.3f}  {c.f1:5.3f}  {c.support:7d}")
    lines.append(f"{'macro':<{width}}  {'':9}  {'':6}  {metrics.macro_f1:5.3f}")
    return "\n".join(lines)

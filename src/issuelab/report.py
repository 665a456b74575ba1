"""The comparison report: report.md, a self-contained report.html (plots inlined), PNG plots and
comparison.json. Plots are drawn with matplotlib's object API on the Agg canvas: no display needed.

    report.md / report.html     the seed's table, per-label F1, costs, calibration, the recommendation
    per-label-f1.png            F1 per label, one bar per engine
    precision-recall.png        micro precision and recall against a single score threshold
    cooccurrence-<engine>.png   issues with gold label (row) that were given label (column), row-normalised
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import numpy as np

from .compare import Comparison, EngineResult
from .data import write_json
from .errors import IssuelabError
from .metrics import multi_hot
from .policy import labels_at
from .tables import format_table

COLORS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C"]


def _figure(width: float, height: float):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise IssuelabError("the report's plots need matplotlib: pip install 'issuelab[report]'") from None
    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "engine"


# -- plots ---------------------------------------------------------------------------------------


def plot_per_label_f1(comparison: Comparison, path: Path) -> None:
    labels = comparison.label_names
    engines = comparison.results
    fig = _figure(8, max(3.0, 0.28 * len(labels) * len(engines) + 1.2))
    ax = fig.add_subplot()
    height = 0.8 / len(engines)
    rows = np.arange(len(labels))
    for k, result in enumerate(engines):
        f1 = [result.metrics.per_label[label].f1 for label in labels]
        ax.barh(rows + (k - (len(engines) - 1) / 2) * height, f1, height, label=f"{result.engine} (macro {result.metrics.macro_f1:.2f})",
                color=COLORS[k % len(COLORS)])  # fmt: skip
    support = [comparison.results[0].metrics.per_label[label].support for label in labels]
    ax.set_yticks(rows, [f"{label} ({n})" for label, n in zip(labels, support)])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1 (label's gold count in brackets)")
    ax.set_title("F1 per label")
    ax.grid(axis="x", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=min(4, len(engines)), fontsize="small")
    fig.savefig(path)


SWEEP = np.linspace(0, 1, 101)  # the thresholds the report's curves are drawn over


def threshold_sweep(result: EngineResult, gold: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Micro precision, recall and coverage (the share of issues given a label) when every score at or above
    t is a label (multi-label), or when the top label is given only at or above t (single-label).
    Precision is nan where nothing is predicted."""
    top = None if result.multi_label else labels_at(result.scores, multi_label=False)
    precision, recall, coverage = [], [], []
    total_gold = max(1, int(gold.sum()))
    for t in thresholds:
        predicted = labels_at(result.scores, True, t) if top is None else top & labels_at(result.scores, True, t)
        hits = int((predicted & gold).sum())
        precision.append(hits / predicted.sum() if predicted.sum() else np.nan)
        recall.append(hits / total_gold)
        coverage.append(predicted.any(axis=1).mean())
    return np.array(precision), np.array(recall), np.array(coverage)


def precision_recall_curve(result: EngineResult, gold: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return threshold_sweep(result, gold, thresholds)[:2]


def _finish(fig, ax, xlabel: str, ylabel: str, title: str, legend_columns: int, path: Path) -> None:
    """The axes and legend every curve plot of the report shares, then the file."""
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncols=min(4, legend_columns), fontsize="small")
    fig.savefig(path)


def plot_precision_recall(comparison: Comparison, sweeps: list, path: Path) -> None:
    fig = _figure(8, 4.5)
    ax = fig.add_subplot()
    for k, (result, (precision, recall, _)) in enumerate(zip(comparison.results, sweeps)):
        color = COLORS[k % len(COLORS)]
        ax.plot(SWEEP, precision, color=color, label=f"{result.engine} precision")
        ax.plot(SWEEP, recall, color=color, linestyle="--", label=f"{result.engine} recall")
    ax.set_xlim(0, 1)
    _finish(fig, ax, "score threshold (the same for every label)", "micro-averaged",
            "Precision (solid) and recall (dashed) against the threshold", 2 * len(comparison.results), path)  # fmt: skip


PRECISION_TARGETS = (0.8, 0.9, 0.95)


def _precision_target_rows(comparison: Comparison, sweeps: list) -> list[list[str]]:
    """Per engine, the most issues it labels (one threshold for every label) at each precision target."""
    rows = []
    for result, (precision, _, coverage) in zip(comparison.results, sweeps):
        reached = [coverage[np.nan_to_num(precision) >= target] for target in PRECISION_TARGETS]
        rows.append([result.engine, *(f"{r.max():.0%} of issues" if len(r) else "not reached" for r in reached)])
    return rows


def plot_precision_coverage(comparison: Comparison, sweeps: list, path: Path) -> None:
    fig = _figure(6.5, 4.5)
    ax = fig.add_subplot()
    for k, (result, (precision, _, coverage)) in enumerate(zip(comparison.results, sweeps)):
        ax.plot(coverage, precision, color=COLORS[k % len(COLORS)], label=result.engine)
    for target in PRECISION_TARGETS:
        ax.axhline(target, color="#999", linewidth=0.6, linestyle=":")
    ax.set_xlim(0, 1.02)
    _finish(fig, ax, "share of issues given at least one label", "precision of the labels given",
            "Precision against coverage (one threshold for every label, swept from 0 to 1)", len(comparison.results), path)  # fmt: skip


def cooccurrence(gold: list[list[str]], predicted: list[list[str]], labels: list[str]) -> np.ndarray:
    """counts[i, j]: issues whose gold labels include labels[i] and whose predicted labels include labels[j]."""
    index = {label: k for k, label in enumerate(labels)}
    counts = np.zeros((len(labels), len(labels)), dtype=int)
    for gold_labels, predicted_labels in zip(gold, predicted):
        for g in gold_labels:
            for p in predicted_labels:
                if g in index and p in index:
                    counts[index[g], index[p]] += 1
    return counts


def plot_cooccurrence(comparison: Comparison, result: EngineResult, path: Path) -> None:
    labels = comparison.label_names
    counts = cooccurrence(comparison.gold, result.predicted, labels)
    gold_totals = multi_hot(comparison.gold, labels).sum(axis=0)
    share = counts / np.maximum(gold_totals, 1)[:, None]
    size = max(4.5, 0.45 * len(labels) + 2.5)
    fig = _figure(size + 1, size)
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), [f"{label} ({n})" for label, n in zip(labels, gold_totals)])
    ax.set_xlabel("predicted label")
    ax.set_ylabel("gold label (issues)")
    ax.set_title(f"{result.engine}: gold vs predicted labels\n(numbers: issues; colour: share of the row's issues)", fontsize="medium")
    if len(labels) <= 20:
        for i in range(len(labels)):
            for j in range(len(labels)):
                if counts[i, j]:
                    ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if share[i, j] > 0.6 else "black")  # fmt: skip
    fig.colorbar(image, ax=ax, shrink=0.8)
    fig.savefig(path)


def plot_learning_curve(comparison: Comparison, path: Path) -> None:
    fig = _figure(8, 4.5)
    ax = fig.add_subplot()
    for k, result in enumerate(comparison.results):
        sizes = [n for n, _ in result.learning_curve]
        means = np.array([np.mean(f1s) for _, f1s in result.learning_curve])
        spread = np.array([np.std(f1s) for _, f1s in result.learning_curve])
        color = COLORS[k % len(COLORS)]
        ax.plot(sizes, means, marker="o", color=color, label=result.engine)
        ax.fill_between(sizes, means - spread, means + spread, color=color, alpha=0.15)
    ax.set_xlabel("labeled issues the model was trained on")
    ax.set_ylabel("micro F1 on the held-out fold")
    ax.set_title("Learning curve (mean over folds; band: one standard deviation)")
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncols=min(4, len(comparison.results)), fontsize="small")
    fig.savefig(path)


def learning_curve_summary(comparison: Comparison) -> str:
    """What doubling the labeled issues bought each engine, read off its learning curve."""
    lines = []
    for result in comparison.results:
        points = {round(n): float(np.mean(f1s)) for n, f1s in result.learning_curve}
        if len(points) < 2:
            continue
        sizes = sorted(points)
        full, half = sizes[-1], min(sizes, key=lambda n: abs(n - sizes[-1] / 2))
        lines.append(f"{result.engine}: micro F1 {points[half]:.3f} with {half} labeled issues, {points[full]:.3f} with "
                     f"{full} ({points[full] - points[half]:+.3f} for twice the issues)")  # fmt: skip
    return "; ".join(lines)


# -- text ----------------------------------------------------------------------------------------


def human_bytes(n: int) -> str:
    if n < 1000:
        return f"{n} B"
    for unit in ("KB", "MB", "GB"):
        n /= 1000
        if n < 1000 or unit == "GB":
            break
    return f"{n:.1f} {unit}"


def _cost_rows(comparison: Comparison) -> list[list[str]]:
    rows = []
    for r in comparison.results:
        rows.append([
            r.engine, f"{r.metrics.f1:.2%}", f"{r.metrics.macro_f1:.2%}", f"{r.train_seconds:.1f} s",
            f"{r.latency_p50 * 1000:.1f} ms", f"{r.latency_p95 * 1000:.1f} ms", human_bytes(r.run_bytes),
            human_bytes(r.shared_bytes) if r.shared_bytes else "-", f"{r.ece:.3f}", ", ".join(r.fallback_labels) or "-",
        ])  # fmt: skip
    return rows


COST_HEADER = ["engine", "micro F1", "macro F1", "train time", "latency p50", "latency p95", "run on disk",
               "shared base model", "ECE", "at the global threshold"]  # fmt: skip


def _per_label_rows(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    header = ["label", "gold"] + [r.engine for r in comparison.results]
    rows = []
    for label in comparison.label_names:
        support = comparison.results[0].metrics.per_label[label].support
        rows.append([label, str(support)] + [f"{r.metrics.per_label[label].f1:.3f}" for r in comparison.results])
    return header, rows


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    escape = lambda s: s.replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(map(escape, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(escape, row)) + " |" for row in rows]
    return "\n".join(lines)


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _intro(comparison: Comparison) -> str:
    d = comparison.data
    held_out = f"{d['issues']} issues" if "folds" in d else f"train {d['train']}, eval {d['eval']}, test {d['test']} issues"
    return f"Engines compared by {comparison.method} ({held_out}), {len(comparison.label_names)} labels."


NOTES = (
    "Latency: one issue per call after a warm-up, on this machine, the way the Action and the service label. "
    "Run on disk: the run directory; shared base model: model files the run loads from a shared cache. "
    "ECE: expected calibration error of the scores (lower: scores closer to observed frequencies). "
    "At the global threshold: labels with fewer than 3 held-out positives (out of fold or in the eval split), too few for a threshold of their own."
)


PRECISION_HEADER = ["engine", *(f"labeled at precision {t:.0%}" for t in PRECISION_TARGETS)]
PRECISION_NOTE = ("The most issues each engine labels while its labels keep a precision (one threshold for every label, on "
                  "held-out scores): what `[policy] target_precision` trades, per label, for fewer wrong labels.")


def write_report(comparison: Comparison, out_dir: str | Path) -> dict[str, Path]:
    """Writes the report files into out_dir; returns their paths by kind."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = {"per-label F1": out / "per-label-f1.png", "precision and recall against the threshold": out / "precision-recall.png"}
    plot_per_label_f1(comparison, plots["per-label F1"])
    gold = multi_hot(comparison.gold, comparison.label_names)
    sweeps = [threshold_sweep(result, gold, SWEEP) for result in comparison.results]  # one pass per engine, for two plots and a table
    plot_precision_recall(comparison, sweeps, plots["precision and recall against the threshold"])
    plots["precision against coverage"] = out / "precision-coverage.png"
    plot_precision_coverage(comparison, sweeps, plots["precision against coverage"])
    precision_rows = _precision_target_rows(comparison, sweeps)
    if any(r.learning_curve for r in comparison.results):
        plots["learning curve"] = out / "learning-curve.png"
        plot_learning_curve(comparison, plots["learning curve"])
    for result in comparison.results:
        key = f"gold vs predicted labels: {result.engine}"
        plots[key] = out / f"cooccurrence-{slug(result.engine)}.png"
        plot_cooccurrence(comparison, result, plots[key])

    seed_table = format_table([r.metrics for r in comparison.results])
    label_header, label_rows = _per_label_rows(comparison)
    recommendation = f"**Recommended engine: `{comparison.recommended}`**: {comparison.reason}."
    curve = learning_curve_summary(comparison)
    curve_text = f"Learning curve: {curve}. A curve still rising at the right says more labeled issues would pay off." if curve else ""
    markdown = "\n\n".join([
        "# issuelab: engine comparison", _intro(comparison), recommendation, *([curve_text] if curve_text else []),
        "## Metrics (the seed's table; differences against the first engine)", f"```\n{seed_table}\n```",
        "## Cost and calibration", _md_table(COST_HEADER, _cost_rows(comparison)), NOTES,
        "## F1 per label", _md_table(label_header, label_rows),
        "## Precision and coverage", PRECISION_NOTE, _md_table(PRECISION_HEADER, precision_rows),
        "## Plots", *(f"### {title}\n\n![{title}]({path.name})" for title, path in plots.items()),
    ])  # fmt: skip
    (out / "report.md").write_text(markdown + "\n", encoding="utf-8")

    def image(path: Path) -> str:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'

    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>issuelab: engine comparison</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1000px; margin: 2em auto; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 14px; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; }}
th {{ background: #f3f3f3; }}
pre {{ background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: 13px; }}
img {{ max-width: 100%; display: block; margin: 1em 0; }}
.recommended {{ background: #eef6ee; border-left: 4px solid #55A868; padding: 0.6em 1em; }}
</style></head><body>
<h1>issuelab: engine comparison</h1>
<p>{html.escape(_intro(comparison))}</p>
<p class="recommended"><strong>Recommended engine: <code>{html.escape(comparison.recommended)}</code></strong>:
{html.escape(comparison.reason)}.</p>
{f"<p>{html.escape(curve_text)}</p>" if curve_text else ""}
<h2>Metrics (the seed's table; differences against the first engine)</h2>
<pre>{html.escape(seed_table)}</pre>
<h2>Cost and calibration</h2>
{_html_table(COST_HEADER, _cost_rows(comparison))}
<p>{html.escape(NOTES)}</p>
<h2>F1 per label</h2>
{_html_table(label_header, label_rows)}
<h2>Precision and coverage</h2>
<p>{html.escape(PRECISION_NOTE)}</p>
{_html_table(PRECISION_HEADER, precision_rows)}
<h2>Plots</h2>
{"".join(f"<h3>{html.escape(title)}</h3>{image(path)}" for title, path in plots.items())}
</body></html>
"""
    (out / "report.html").write_text(page, encoding="utf-8")
    write_json(out / "comparison.json", comparison.to_json())
    return {"markdown": out / "report.md", "html": out / "report.html", "json": out / "comparison.json", **plots}

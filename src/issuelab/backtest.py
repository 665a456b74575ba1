"""`backtest`: what the bot would have done on recent issues that people labeled.

Each issue is treated as just opened (no labels yet) and goes through the same policy as the Action;
the outcome is a *match* (every label the bot adds is one people gave), a *mismatch* (it adds at
least one they did not) or *no prediction* (the policy adds nothing). The seed's micro metrics of
the added labels come with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .data import Issue, read_issues
from .errors import IssuelabError
from .labeler import Labeler
from .metrics import f1
from .policy import IssueState, PolicyConfig, decide, label_matrix


def recent(issues: Sequence[Issue], last: int | None) -> list[Issue]:
    """The `last` most recent issues: by `number` (or `created_at`) when present, else file order."""
    issues = list(issues)
    if not last:
        return issues
    if all(isinstance(i.extra.get("number"), int) for i in issues):
        issues.sort(key=lambda i: i.extra["number"])
    elif all(i.extra.get("created_at") for i in issues):
        issues.sort(key=lambda i: i.extra["created_at"])
    return issues[-last:]


THRESHOLD_SCALES = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 1.75, 2.0)


def precision_coverage(labeler: Labeler, issues: Sequence[Issue], scores: Sequence[dict[str, float]], policy: PolicyConfig) -> list[dict[str, float]]:
    """The precision / coverage trade-off: every threshold of the run times a scale (below 1: more labels,
    above: fewer and surer), confident labels only (min_labels 0), `max_labels` as the policy says. Per
    scale: the precision and recall of the added labels and the share of issues that get at least one."""
    names = labeler.label_names
    matrix = np.array([[row[name] for name in names] for row in scores])
    gold = np.array([[name in issue.labels for name in names] for issue in issues], dtype=bool)
    rows = []
    for scale in THRESHOLD_SCALES:
        added = label_matrix(matrix, labeler.threshold_array * scale, labeler.multi_label, 0, policy.max_labels)
        if not labeler.multi_label:  # the argmax, kept where its score reaches the scaled threshold
            added &= matrix >= labeler.threshold_array * scale
        correct = int((added & gold).sum())
        rows.append({"scale": scale, "precision": round(correct / max(1, int(added.sum())), 4), "recall": round(correct / max(1, int(gold.sum())), 4),
                     "coverage": round(float(added.any(axis=1).mean()) if len(added) else 0.0, 4)})  # fmt: skip
    return rows


def plot_precision_coverage(rows: list[dict[str, float]], path: str | Path, title: str) -> None:
    from .report import _figure

    fig = _figure(5.5, 4)
    ax = fig.add_subplot()
    ax.plot([r["coverage"] for r in rows], [r["precision"] for r in rows], marker="o", markersize=4)
    own = [r for r in rows if r["scale"] == 1.0]
    ax.plot([r["coverage"] for r in own], [r["precision"] for r in own], "o", color="#C44E52", markersize=8, label="the run's thresholds (x1)")
    ax.legend(loc="lower left", fontsize=8)
    for r in rows:
        ax.annotate(f"x{r['scale']:g}", (r["coverage"], r["precision"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("share of issues labeled")
    ax.set_ylabel("precision of the labels added")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    fig.savefig(path)


def backtest(labeler: Labeler, issues: Sequence[Issue], policy: PolicyConfig | None = None) -> dict[str, Any]:
    policy = policy or labeler.policy
    aliases = labeler.aliases
    outcomes = {"match": 0, "mismatch": 0, "no prediction": 0}
    rows, counts = [], {"correct": 0, "added": 0, "gold": 0, "suggested": 0, "suggested_correct": 0}
    all_scores = labeler.scores(list(issues), progress=True)
    for issue, scores in zip(issues, all_scores):
        decision = decide(IssueState(labels=[]), scores, labeler.label_names, labeler.thresholds,
                          labeler.multi_label, policy, aliases)  # fmt: skip
        added, gold = decision.labels, set(issue.labels)
        outcome = "no prediction" if not added else "match" if set(added) <= gold else "mismatch"
        outcomes[outcome] += 1
        counts["correct"] += len(set(added) & gold)
        counts["added"] += len(added)
        counts["gold"] += len(gold)
        suggested = [name for name, _ in decision.suggested]
        counts["suggested"] += len(suggested)
        counts["suggested_correct"] += len(set(suggested) & gold)
        rows.append({"id": issue.id, "gold": issue.labels, "added": added, "suggested": suggested, "outcome": outcome})
    precision = counts["correct"] / counts["added"] if counts["added"] else 0.0
    recall = counts["correct"] / counts["gold"] if counts["gold"] else 0.0
    micro_f1 = f1(counts["correct"], counts["added"], counts["gold"])
    metrics = dict(counts, precision=round(precision, 5), recall=round(recall, 5), f1=round(micro_f1, 5))
    return {"issues": len(issues), "outcomes": outcomes, "metrics": metrics, "rows": rows,
            "precision_coverage": precision_coverage(labeler, issues, all_scores, policy)}  # fmt: skip


def backtest_run(model_dir: str | Path, data: str | Path, last: int | None, policy: PolicyConfig | None = None) -> dict[str, Any]:
    """`issuelab backtest`: the run of `model_dir` on the `last` labeled issues of `data`, whose labels
    (those of the run, or aliases of them) are the truth."""
    labeler = Labeler.load(model_dir)
    issues = read_issues(data, labeler.label_names, aliases=labeler.aliases, drop_unknown=True)
    issues = recent([i for i in issues if i.labels], last)
    if not issues:
        raise IssuelabError(f"{data}: no issue carries a label of the run ({', '.join(labeler.label_names)})")
    return backtest(labeler, issues, policy)


def format_report(result: dict[str, Any], model_name: str) -> str:
    n = max(1, result["issues"])
    lines = [f"### issuelab backtest: `{model_name}` on the last {result['issues']} labeled issues", "",
             "| outcome | issues | share |", "| --- | ---: | ---: |"]  # fmt: skip
    lines += [f"| {name} | {count} | {count / n:.1%} |" for name, count in result["outcomes"].items()]
    m = result["metrics"]
    lines += ["", f"Labels added: precision {m['precision']:.2%} ({m['correct']}/{m['added']}), "
              f"recall {m['recall']:.2%} ({m['correct']}/{m['gold']}), micro F1 {m['f1']:.2%} "
              f"(a label people gave that the bot did not add is a miss)."]  # fmt: skip
    lines += ["", "Precision against coverage, every threshold scaled (x1 is the run's; confident labels only):", "",
              "| thresholds | precision | recall | issues labeled |", "| ---: | ---: | ---: | ---: |"]  # fmt: skip
    lines += [f"| x{r['scale']:g} | {r['precision']:.1%} | {r['recall']:.1%} | {r['coverage']:.1%} |" for r in result["precision_coverage"]]
    if m["suggested"]:
        lines.append(f"Labels suggested in a comment (policy.suggest): {m['suggested']}, of which people gave "
                     f"{m['suggested_correct']} ({m['suggested_correct'] / m['suggested']:.1%}).")  # fmt: skip
    return "\n".join(lines) + "\n"

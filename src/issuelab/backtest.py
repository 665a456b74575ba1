"""`backtest`: what the bot would have done on recent issues that people labeled.

Each issue is treated as just opened (no labels yet) and goes through the same policy as the Action;
the outcome is a *match* (every label the bot adds is one people gave), a *mismatch* (it adds at
least one they did not) or *no prediction* (the policy adds nothing). The seed's micro metrics of
the added labels come with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .config import PolicyConfig
from .data import Issue
from .labeler import Labeler
from .policy import IssueState, decide


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


def backtest(labeler: Labeler, issues: Sequence[Issue], policy: PolicyConfig | None = None) -> dict[str, Any]:
    policy = policy or labeler.policy
    aliases = labeler.aliases
    predictions = labeler.predict(list(issues), progress=True)
    outcomes = {"match": 0, "mismatch": 0, "no prediction": 0}
    rows, counts = [], {"correct": 0, "added": 0, "gold": 0}
    for issue, prediction in zip(issues, predictions):
        decision = decide(IssueState(labels=[]), prediction.scores, labeler.label_names, labeler.thresholds,
                          labeler.multi_label, policy, aliases)  # fmt: skip
        added, gold = decision.labels, set(issue.labels)
        outcome = "no prediction" if not added else "match" if set(added) <= gold else "mismatch"
        outcomes[outcome] += 1
        counts["correct"] += len(set(added) & gold)
        counts["added"] += len(added)
        counts["gold"] += len(gold)
        rows.append({"id": issue.id, "gold": issue.labels, "added": added, "outcome": outcome})
    precision = counts["correct"] / counts["added"] if counts["added"] else 0.0
    recall = counts["correct"] / counts["gold"] if counts["gold"] else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    metrics = dict(counts, precision=round(precision, 5), recall=round(recall, 5), f1=round(f1, 5))
    return {"issues": len(issues), "outcomes": outcomes, "metrics": metrics, "rows": rows}


def format_report(result: dict[str, Any], model_name: str) -> str:
    n = max(1, result["issues"])
    lines = [f"### issuelab backtest: `{model_name}` on the last {result['issues']} labeled issues", "",
             "| outcome | issues | share |", "| --- | ---: | ---: |"]  # fmt: skip
    lines += [f"| {name} | {count} | {count / n:.1%} |" for name, count in result["outcomes"].items()]
    m = result["metrics"]
    lines += ["", f"Labels added: precision {m['precision']:.2%} ({m['correct']}/{m['added']}), "
              f"recall {m['recall']:.2%} ({m['correct']}/{m['gold']}), micro F1 {m['f1']:.2%} "
              f"(a label people gave that the bot did not add is a miss)."]  # fmt: skip
    return "\n".join(lines) + "\n"

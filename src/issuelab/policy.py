"""The label policy: the one place where scores become labels.

`choose_labels` applies a run's thresholds (or the argmax of a single-label run) with `max_labels` and
`min_labels`: `predict`, `evaluate` and `crossval` see its labels. `decide` is what the GitHub side
may do with an issue's scores; the Action, the webhook service and `backtest` all call it.

Rules, in order:
1. skip issues opened by bots (`skip_bots`) and by listed logins (`skip_authors`);
2. skip issues that already carry a managed label (one of the run's labels or an alias of one:
   a person or an earlier run labeled it) when `skip_labeled`;
3. labels a person removed from the issue are never proposed again;
4. the run's own choice (per-label thresholds, `max_labels`, `min_labels`) among the rest;
5. nothing left: `default_label`, if set (and not removed by a person).
Labels are only ever added, never removed. `dry_run` decides and reports without adding.

With `suggest` on, each label has two thresholds: the run's (apply: the label is added) and
`suggest_scale` times it (suggest: the label is listed, with its score, in one comment on the issue,
for a person to add or not). Labels that only `min_labels` would fill in are suggested, not added, so
`default_label` then works as the triage label of issues where nothing is confident.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEFAULT_THRESHOLD = 0.5  # a label without a tuned threshold


@dataclass
class PolicyConfig:
    max_labels: int = 3  # 0 means no limit
    min_labels: int = 1  # if nothing passes its threshold, take the top-scoring labels up to this many
    default_label: str = ""  # for the GitHub side: applied when nothing passes
    dry_run: bool = False  # GitHub side: decide and report, add no label
    skip_labeled: bool = True  # GitHub side: leave issues that already carry a managed label
    skip_bots: bool = True  # GitHub side: leave issues opened by bots
    skip_authors: list[str] = field(default_factory=list)  # GitHub side: logins to leave alone
    suggest: bool = False  # GitHub side: list labels between the two thresholds in one comment (edited in place)
    suggest_scale: float = 0.5  # a label's suggest threshold: this times its apply threshold
    target_precision: float = 0.0  # training: > 0 sets each label's apply threshold for this precision, not the best F1


def labels_at(scores: np.ndarray, multi_label: bool, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """(issues, labels) booleans at one threshold for every label: each score at or above it
    (multi-label), or each issue's top label (single-label)."""
    if multi_label:
        return scores >= threshold
    top = np.zeros(scores.shape, dtype=bool)
    top[np.arange(len(scores)), scores.argmax(axis=1)] = True
    return top


def threshold_array(thresholds: Mapping[str, float], label_names: Sequence[str]) -> np.ndarray:
    """Per-label thresholds in label order (a missing label gets DEFAULT_THRESHOLD)."""
    return np.array([thresholds.get(name, DEFAULT_THRESHOLD) for name in label_names], dtype=float)


def choose_labels(
    scores: np.ndarray, label_names: Sequence[str], thresholds: np.ndarray, multi_label: bool, policy: PolicyConfig
) -> list[str]:
    """Single-label: the argmax. Multi-label: scores at or above their threshold, highest first,
    at most policy.max_labels; if fewer than policy.min_labels pass, the top ones fill in."""
    order = np.argsort(-scores, kind="stable")
    if not multi_label:
        return [label_names[order[0]]]
    chosen = [k for k in order if scores[k] >= thresholds[k]]
    if policy.max_labels:
        chosen = chosen[: policy.max_labels]
    for k in order:
        if len(chosen) >= policy.min_labels:
            break
        if k not in chosen:
            chosen.append(k)
    return [label_names[k] for k in chosen]


def label_matrix(scores: np.ndarray, thresholds: np.ndarray | float, multi_label: bool, min_labels: int, max_labels: int) -> np.ndarray:
    """`choose_labels` for many issues at once, as an (issues, labels) boolean matrix: what thresholds are
    chosen against, so that they are tuned under the rule that applies them."""
    if not multi_label:
        return labels_at(scores, multi_label=False)
    order = np.argsort(-scores, axis=1, kind="stable")
    passed = np.take_along_axis(scores >= thresholds, order, axis=1)  # in each row's score order
    keep = passed & (np.cumsum(passed, axis=1) <= max_labels) if max_labels else passed
    if min_labels:  # the top labels not kept fill in until there are min_labels
        deficit = np.maximum(0, min_labels - keep.sum(axis=1, keepdims=True))
        keep = keep | (~keep & (np.cumsum(~keep, axis=1) <= deficit))
    out = np.zeros(scores.shape, dtype=bool)
    np.put_along_axis(out, order, keep, axis=1)
    return out


def resolve_policy(run_policy: PolicyConfig, override: PolicyConfig | None = None, dry_run: bool = False) -> PolicyConfig:
    """The policy the GitHub side uses: a config's [policy] when given, else the run's; `dry_run` on top."""
    policy = override or run_policy
    return dataclasses.replace(policy, dry_run=True) if dry_run else policy


@dataclass
class IssueState:
    """What the policy needs to know about an issue on GitHub (read by `github.events.issue_state`)."""

    labels: list[str]
    author: str = ""
    author_is_bot: bool = False
    removed_by_person: set[str] = field(default_factory=set)


@dataclass
class Decision:
    action: str  # "label" | "skip" | "none" (nothing to add)
    labels: list[str]  # to add (or that would be added, in a dry run)
    reason: str
    top_scores: list[tuple[str, float]] = field(default_factory=list)
    dry_run: bool = False
    suggested: list[tuple[str, float]] = field(default_factory=list)  # (label, score), highest first
    evidence: dict[str, list[str]] = field(default_factory=dict)  # label added or suggested -> why (the engine's evidence)

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "labels": self.labels,
            "reason": self.reason,
            "dry_run": self.dry_run,
            "top_scores": [{"label": name, "score": round(score, 4)} for name, score in self.top_scores],
            "suggested": [{"label": name, "score": round(score, 4)} for name, score in self.suggested],
            "evidence": self.evidence,
        }


def _managed(label_names: Sequence[str], aliases: dict[str, str] | None) -> dict[str, str]:
    managed = {name.lower(): name for name in label_names}
    managed.update({alias.lower(): target for alias, target in (aliases or {}).items()})
    return managed


def skip_reason(state: IssueState, label_names: Sequence[str], policy: PolicyConfig, aliases: dict[str, str] | None = None) -> str | None:
    """Rules 1 and 2, which need no prediction: why the issue is left alone, or None."""
    if policy.skip_bots and state.author_is_bot:
        return f"opened by a bot ({state.author})"
    if state.author.lower() in {login.lower() for login in policy.skip_authors}:
        return f"author {state.author} is in policy.skip_authors"
    managed = _managed(label_names, aliases)
    carried = [label for label in state.labels if label.lower() in managed]
    if policy.skip_labeled and carried:
        return f"already labeled ({', '.join(carried)})"
    return None


def decide(
    state: IssueState,
    scores: dict[str, float],
    label_names: Sequence[str],
    thresholds: dict[str, float],
    multi_label: bool,
    policy: PolicyConfig,
    aliases: dict[str, str] | None = None,
    top: int = 5,
) -> Decision:
    """Which labels to add to one issue, and why."""
    top_scores = sorted(((name, float(scores.get(name, 0.0))) for name in label_names), key=lambda x: -x[1])[:top]
    reason = skip_reason(state, label_names, policy, aliases)
    if reason:
        return Decision("skip", [], reason, top_scores, policy.dry_run)
    managed = _managed(label_names, aliases)
    removed = {label.lower() for label in state.removed_by_person}
    removed |= {managed[label].lower() for label in removed if label in managed}  # an alias removed: its label too
    score_row = np.array([scores.get(name, 0.0) if name.lower() not in removed else -np.inf for name in label_names])
    threshold_row = threshold_array(thresholds, label_names)
    chosen = [name for name in choose_labels(score_row, label_names, threshold_row, multi_label, policy) if name.lower() not in removed]
    present = {label.lower() for label in state.labels}
    chosen = [name for name in chosen if name.lower() not in present]
    passes = {name for name in chosen if scores.get(name, 0) >= thresholds.get(name, DEFAULT_THRESHOLD)}
    suggested = []
    if policy.suggest:  # only confident labels are added; the rest above their suggest threshold are listed
        chosen = [name for name in chosen if name in passes]
        suggested = [(name, score) for name, score in sorted(((n, float(scores.get(n, 0.0))) for n in label_names), key=lambda x: -x[1])
                     if name not in chosen and name.lower() not in removed | present
                     and score >= policy.suggest_scale * thresholds.get(name, DEFAULT_THRESHOLD)][: policy.max_labels or None]  # fmt: skip
    note = f"; not re-adding {', '.join(sorted(state.removed_by_person))} (removed by a person)" if removed else ""
    if chosen:
        passed = "above threshold" if all(name in passes for name in chosen) else "top score"
        return Decision("label", chosen, f"{passed}{note}", top_scores, policy.dry_run, suggested)
    default = policy.default_label
    if default and default.lower() not in removed and default.lower() not in present:
        return Decision("label", [default], f"no label passed its threshold: default_label{note}", top_scores, policy.dry_run, suggested)
    return Decision("none", [], f"no label passed its threshold{note}", top_scores, policy.dry_run, suggested)

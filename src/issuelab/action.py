"""Labeling issues on GitHub: one issue (`label_issue`, shared by the Action and the webhook service)
and the GitHub Action's entry point (`run_action`).

For each issue the current state is read from the API (labels may have changed since the event
was sent; the events tell which labels a person removed), the policy decides (issuelab.policy),
and labels are added with one POST (adding is idempotent on GitHub: a retried request cannot
duplicate a label, and nothing is ever removed).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from .config import PolicyConfig
from .data import Issue
from .errors import IssuelabError
from .github import GitHubClient
from .labeler import Labeler
from .policy import Decision, IssueState, decide, skip_reason

ISSUE_ACTIONS = ("opened", "edited", "reopened")


class IssueLabeler:
    """A loaded run plus the policy, ready to label issues; safe to share between threads."""

    def __init__(self, labeler: Labeler, client: GitHubClient, policy: PolicyConfig | None = None):
        self.labeler = labeler
        self.client = client
        self.policy = policy or labeler.policy
        self.aliases = labeler.aliases
        self._predict_lock = threading.Lock()  # engines keep per-call state (the lora decoder's cache)

    def label_issue(self, repo: str, number: int) -> Decision:
        issue = self.client.issue(repo, number)
        if "pull_request" in issue:
            return Decision("skip", [], "a pull request", [], self.policy.dry_run)
        state = IssueState.from_github(issue)
        names = self.labeler.label_names
        reason = skip_reason(state, names, self.policy, self.aliases)
        if reason:  # no prediction needed
            return Decision("skip", [], reason, [], self.policy.dry_run)
        state = IssueState.from_github(issue, self.client.issue_events(repo, number))
        with self._predict_lock:
            prediction = self.labeler.predict([Issue(id=number, title=issue.get("title") or "", body=issue.get("body"))])[0]
        decision = decide(state, prediction.scores, names, self.labeler.thresholds, self.labeler.multi_label, self.policy, self.aliases)
        if decision.action == "label" and not self.policy.dry_run:
            self.client.add_labels(repo, number, decision.labels)
        return decision


def read_event(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IssuelabError(f"{path}: event file not found (GITHUB_EVENT_PATH); run inside a GitHub Actions job or pass --event") from None
    except json.JSONDecodeError as e:
        raise IssuelabError(f"{path}: malformed event JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(payload, dict):
        raise IssuelabError(f"{path}: the event payload is not a JSON object")
    return payload


def event_target(payload: dict[str, Any], event_name: str, actions: tuple[str, ...]) -> tuple[str, int] | str:
    """(repo, issue number) to label, or the reason the event is ignored."""
    if event_name not in ("issues", ""):
        return f"event '{event_name}' is not an issues event"
    action = payload.get("action", "")
    if action not in actions:
        return f"issues.{action} is not one of: {', '.join(actions)}"
    issue, repo = payload.get("issue"), (payload.get("repository") or {}).get("full_name")
    if not isinstance(issue, dict) or not isinstance(issue.get("number"), int) or not repo:
        raise IssuelabError("the event payload has no issue number or repository.full_name")
    return repo, issue["number"]


def job_summary(repo: str, number: int, decision: Decision, run_name: str) -> str:
    verb = {"label": "would add" if decision.dry_run else "added", "skip": "skipped", "none": "no label"}[decision.action]
    labels = ", ".join(f"`{label}`" for label in decision.labels) or "none"
    lines = [
        f"### issuelab: {repo}#{number}",
        "",
        f"**{verb}**: {labels}{' (dry run)' if decision.dry_run else ''}  ",
        f"reason: {decision.reason}  ",
        f"model: `{run_name}`",
    ]
    if decision.top_scores:
        lines += ["", "| label | score |", "| --- | ---: |"] + [f"| {name} | {score:.3f} |" for name, score in decision.top_scores]
    return "\n".join(lines) + "\n"


def run_action(
    model_dir: str | Path,
    event_path: str | Path,
    event_name: str = "issues",
    client: GitHubClient | None = None,
    policy: PolicyConfig | None = None,
    actions: tuple[str, ...] = ("opened",),
    summary_path: str | Path | None = None,
) -> Decision | str:
    """The Action's step: returns the decision, or why the event was ignored."""
    target = event_target(read_event(event_path), event_name, actions)
    if isinstance(target, str):
        return target
    repo, number = target
    labeler = Labeler.load(model_dir)
    decision = IssueLabeler(labeler, client or GitHubClient(), policy).label_issue(repo, number)
    summary_path = summary_path or os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_path:
        with open(summary_path, "a", encoding="utf-8") as handle:
            handle.write(job_summary(repo, number, decision, Path(model_dir).name))
    return decision

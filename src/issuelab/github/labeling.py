"""Labeling one issue on GitHub: shared by the Action and the webhook service.

The issue's current state is read from the API (labels may have changed since the event was sent;
its events tell which labels a person removed), the run scores it, the policy decides once
(`issuelab.policy.decide`), and labels are added with one POST (adding is idempotent on GitHub: a
retried request cannot duplicate a label, and nothing is ever removed).
"""

from __future__ import annotations

import threading

from ..data import Issue
from ..labeler import Labeler
from ..policy import Decision, PolicyConfig, decide, skip_reason
from .client import GitHubClient
from .events import issue_state


class GitHubLabeler:
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
        names = self.labeler.label_names
        reason = skip_reason(issue_state(issue), names, self.policy, self.aliases)
        if reason:  # no prediction needed
            return Decision("skip", [], reason, [], self.policy.dry_run)
        state = issue_state(issue, self.client.issue_events(repo, number))
        with self._predict_lock:
            scores = self.labeler.scores([Issue(id=number, title=issue.get("title") or "", body=issue.get("body"))])[0]
        decision = decide(state, scores, names, self.labeler.thresholds, self.labeler.multi_label, self.policy, self.aliases)
        if decision.action == "label" and not self.policy.dry_run:
            self.client.add_labels(repo, number, decision.labels)
        return decision

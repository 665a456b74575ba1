"""Labeling one issue on GitHub: shared by the Action and the webhook service.

The issue's current state is read from the API (labels may have changed since the event was sent;
its events tell which labels a person removed), the run scores it, the policy decides once
(`issuelab.policy.decide`), and labels are added with one POST (adding is idempotent on GitHub: a
retried request cannot duplicate a label, and nothing is ever removed).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from ..data import Issue
from ..errors import IssuelabError
from ..labeler import Labeler, has_text, restore_interrupted
from ..policy import Decision, PolicyConfig, decide, resolve_policy, skip_reason
from .client import GitHubClient
from .events import issue_state


class GitHubLabeler:
    """A loaded run plus the policy, ready to label issues; safe to share between threads."""

    def __init__(self, labeler: Labeler, client: GitHubClient, policy: PolicyConfig | None = None, explain: bool = False):
        self.labeler = labeler
        self.client = client
        self.policy = policy or labeler.policy
        # Evidence costs a second pass for some engines (a whole decode for lora): computed only where it is
        # shown, for every label in the Action's job summary (`explain`), for suggested ones in the comment.
        self.explain = explain
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
        text = Issue(id=number, title=issue.get("title") or "", body=issue.get("body"))
        if not has_text(text):
            return Decision("skip", [], "the issue has no title and no body: nothing to label from", [], self.policy.dry_run)
        state = issue_state(issue, self.client.issue_events(repo, number))
        with self._predict_lock:
            scores = self.labeler.scores([text])[0]
            decision = decide(state, scores, names, self.labeler.thresholds, self.labeler.multi_label, self.policy, self.aliases)
            explained = [name for name in decision.labels if name in names and self.explain] + [name for name, _ in decision.suggested]
            decision.evidence = self.labeler.explain(text, explained) if explained else {}
        if decision.action == "label" and not self.policy.dry_run:
            self.client.add_labels(repo, number, decision.labels)
        if self.policy.suggest and not self.policy.dry_run and decision.action != "skip":
            self._update_suggestions(repo, number, decision)
        return decision

    def _update_suggestions(self, repo: str, number: int, decision: Decision) -> None:
        """One comment per issue: created when there is a first suggestion, edited in place after (found
        by its marker), never a second one; an unchanged text is not written again."""
        existing = next((c for c in self.client.comments(repo, number) if SUGGESTION_MARKER in (c.get("body") or "")), None)
        if existing is None and not decision.suggested:
            return
        body = suggestion_comment(decision)
        if existing is None:
            self.client.add_comment(repo, number, body)
        elif existing.get("body") != body:
            self.client.edit_comment(repo, existing["id"], body)


SUGGESTION_MARKER = "<!-- issuelab:suggestions -->"


def suggestion_comment(decision: Decision) -> str:
    """The comment's text: the suggested labels with their scores, and what was added."""
    lines = [SUGGESTION_MARKER]
    if decision.suggested:
        lines += ["issuelab suggests these labels (not added: below the confidence needed to add them):", "",
                  "| label | score | why |", "| --- | ---: | --- |"]  # fmt: skip
        lines += [f"| `{name}` | {score:.2f} | {'; '.join(decision.evidence.get(name, [])).replace('|', '/')} |" for name, score in decision.suggested]
    else:
        lines.append("issuelab has no label to suggest for this issue now.")
    if decision.action == "label" and decision.labels:
        lines += ["", f"Added: {', '.join(f'`{name}`' for name in decision.labels)}."]
    return "\n".join(lines) + "\n"


class RunDirectory:
    """One service, many repositories: `DIR/OWNER/NAME/` is the run of a repository, `DIR/default/` the run
    of any other (optional). A run is loaded on first use and again when its manifest changes, so a new run
    promoted into place (`issuelab train --out DIR/OWNER/NAME --force` renames it in) answers from the next
    issue on, without a restart. Each run keeps its own [policy] unless `policy` overrides it; `dry_run`
    applies to all."""

    def __init__(self, directory: str | Path, client: GitHubClient, policy: PolicyConfig | None = None, dry_run: bool = False):
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise IssuelabError(f"--models {self.directory}: not a directory (it holds OWNER/NAME/ run directories and optionally default/)")
        self.client, self.policy, self.dry_run = client, policy, dry_run
        self._loaded: dict[Path, tuple[int, GitHubLabeler]] = {}
        self._refused: dict[Path, int] = {}  # run -> manifest version that failed to load
        self._lock = threading.Lock()

    def run_for(self, repo: str) -> Path:
        for candidate in (self.directory / repo, self.directory / "default"):
            if (restore_interrupted(candidate) / "manifest.json").exists():
                return candidate
        raise IssuelabError(f"no run for {repo} in {self.directory}: add {self.directory / repo} or {self.directory / 'default'}")

    def labeler_for(self, repo: str) -> GitHubLabeler:
        run = self.run_for(repo)
        version = (run / "manifest.json").stat().st_mtime_ns
        with self._lock:
            loaded = self._loaded.get(run)
            if loaded is not None and version in (loaded[0], self._refused.get(run)):
                return loaded[1]  # current, or a new version refused before (not loaded again for every issue)
            try:
                labeler = Labeler.load(run)
            except IssuelabError as e:
                if loaded is None:
                    raise
                self._refused[run] = version  # said once per bad version; the good run keeps answering
                logging.getLogger("issuelab.serve").error("new run refused; the one loaded before keeps answering",
                                                          extra={"fields": {"run": str(run), "error": str(e)}})  # fmt: skip
                return loaded[1]
            policy = resolve_policy(labeler.policy, self.policy, self.dry_run)
            self._loaded[run] = (version, GitHubLabeler(labeler, self.client, policy))
            return self._loaded[run][1]

    def label_issue(self, repo: str, number: int) -> Decision:
        return self.labeler_for(repo).label_issue(repo, number)

"""The GitHub Action's step (`issuelab action`), and the one writer of what a workflow job shows: the
step summary (GITHUB_STEP_SUMMARY) and the step outputs (GITHUB_OUTPUT)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from ..labeler import Labeler
from ..policy import Decision, PolicyConfig
from .client import GitHubClient
from .events import issue_target, read_event
from .labeling import GitHubLabeler


def append_step_summary(markdown: str, path: str | Path | None = None) -> None:
    """Appends to the job's summary page (GITHUB_STEP_SUMMARY); nothing outside a workflow."""
    path = path or os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(markdown)


def write_step_outputs(outputs: dict[str, str], path: str | Path | None = None) -> None:
    """Sets the step's outputs (GITHUB_OUTPUT): one `name=value` line each; nothing outside a workflow."""
    path = path or os.environ.get("GITHUB_OUTPUT")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.writelines(f"{name}={value}\n" for name, value in outputs.items())


def job_summary(repo: str, number: int, decision: Decision, run_name: str) -> str:
    verb = {"label": "would add" if decision.dry_run else "added", "skip": "skipped", "none": "no label"}[decision.action]
    labels = ", ".join(f"`{label}`" for label in decision.labels) or "none"
    lines = [
        f"### issuelab: {repo}#{number}",
        "",
        f"**{verb}**: {labels}{' (dry run)' if decision.dry_run else ''}  ",
        f"reason: {decision.reason}  ",
        *([f"suggested (not added): {', '.join(f'`{name}` ({score:.2f})' for name, score in decision.suggested)}  "] if decision.suggested else []),
        f"model: `{run_name}`",
    ]
    if decision.top_scores:
        lines += ["", "| label | score |", "| --- | ---: |"] + [f"| {name} | {score:.3f} |" for name, score in decision.top_scores]
    if decision.evidence:
        lines += ["", "Why:"] + [f"- `{name}`: {'; '.join(evidence) or 'no evidence'}" for name, evidence in decision.evidence.items()]
    return "\n".join(lines) + "\n"


def run_action(
    model_dir: str | Path,
    event_path: str | Path,
    event_name: str = "issues",
    client: GitHubClient | None = None,
    policy: PolicyConfig | None = None,
    actions: Sequence[str] = ("opened",),
) -> Decision | str:
    """The Action's step: labels the event's issue, writes the job summary and the step outputs (labels,
    decision); returns the decision, or why the event was ignored."""
    target = issue_target(event_name, read_event(event_path), actions)
    if isinstance(target, str):
        return target
    labeler = Labeler.load(model_dir)
    decision = GitHubLabeler(labeler, client or GitHubClient(), policy, explain=True).label_issue(target.repo, target.number)
    append_step_summary(job_summary(target.repo, target.number, decision, Path(model_dir).name))
    write_step_outputs({"labels": json.dumps(decision.labels, ensure_ascii=False), "decision": decision.action})
    return decision

"""GitHub's payloads read once, here: which issue an `issues` event asks to label (for the Action and
the webhook service alike), and what the policy needs to know of an issue and its timeline."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import IssuelabError
from ..policy import IssueState
from . import ISSUE_ACTIONS  # noqa: F401  (re-exported: the actions an event may name)
from .client import REPO_PATTERN


class EventError(IssuelabError):
    """An event payload that cannot be what GitHub sends."""


@dataclass(frozen=True)
class IssueTarget:
    repo: str  # owner/name
    number: int


def read_event(path: str | Path) -> dict[str, Any]:
    """The Action's event payload (GITHUB_EVENT_PATH)."""
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


def issue_target(event_name: str, payload: Any, actions: Sequence[str]) -> IssueTarget | str:
    """The issue an `issues` event of one of `actions` asks to label, or why the event is ignored.
    Raises EventError when such an event has no positive issue number or a repository name that is not
    OWNER/NAME (checked before any API call is made with them)."""
    if event_name != "issues":
        return f"event '{event_name}' is not an issues event"
    if not isinstance(payload, dict):
        raise EventError("the event payload is not a JSON object")
    action = payload.get("action", "")
    if action not in actions:
        return f"issues.{action} is not one of: {', '.join(actions)}"
    issue, repository = payload.get("issue"), payload.get("repository")
    repo = repository.get("full_name") if isinstance(repository, dict) else None
    number = issue.get("number") if isinstance(issue, dict) else None
    if type(number) is not int or number < 1 or not isinstance(repo, str) or not REPO_PATTERN.match(repo):
        raise EventError("the event payload has no issue number or repository.full_name")
    return IssueTarget(repo, number)


def is_bot(user: dict[str, Any]) -> bool:
    return user.get("type") == "Bot" or str(user.get("login", "")).endswith("[bot]")


def issue_state(issue: dict[str, Any], events: Iterable[dict[str, Any]] = ()) -> IssueState:
    """An issue (REST `issues/N`) and its events as the policy sees them: labels, author, and the labels a
    person (not a bot) removed."""
    user = issue.get("user") or {}
    removed = set()
    for event in events:
        actor = event.get("actor") or {}
        if event.get("event") == "unlabeled" and not is_bot(actor) and (event.get("label") or {}).get("name"):
            removed.add(event["label"]["name"])
    labels = [label["name"] if isinstance(label, dict) else str(label) for label in issue.get("labels") or []]
    return IssueState(labels=labels, author=user.get("login", ""), author_is_bot=is_bot(user), removed_by_person=removed)

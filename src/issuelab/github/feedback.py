"""`feedback`: what people corrected after the bot labeled an issue, as training data and as a live precision.

For each issue the bot labeled (its `labeled` events, by the bot's login), the issue's events tell which of
those labels a person later removed and which labels a person added after the bot. The issue's labels now
are the corrected set: exported as a dataset line (with `bot_added`, `removed_by_people` and
`added_by_people`), it retrains the model on what maintainers decided, and the counts give the bot's
precision as maintainers judged it (a label kept counts as right, a label removed as wrong).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import Any

from ..data import iter_jsonl, write_jsonl
from ..errors import DataError
from .client import GitHubClient, check_repo
from .events import is_bot

DEFAULT_BOT = "github-actions[bot]"  # the Action's login; a GitHub App labels as "<app-name>[bot]"


def corrections(events: Iterable[dict[str, Any]], bot: str) -> dict[str, list[str]]:
    """From an issue's events, oldest first: the labels `bot` added, those a person removed after the bot
    added them, and those a person added after the bot's first label."""
    added: list[str] = []
    removed: list[str] = []
    by_people: list[str] = []
    for event in events:
        actor = event.get("actor") or {}
        name = (event.get("label") or {}).get("name")
        if not name or event.get("event") not in ("labeled", "unlabeled"):
            continue
        by_bot = str(actor.get("login", "")).lower() == bot.lower()
        if event["event"] == "labeled" and by_bot:
            if name not in added:
                added.append(name)
        elif added and not by_bot and not is_bot(actor):
            if event["event"] == "unlabeled" and name in added and name not in removed:
                removed.append(name)
            elif event["event"] == "labeled" and name not in added and name not in by_people:
                by_people.append(name)
    return {"bot_added": added, "removed_by_people": removed, "added_by_people": by_people}


def collect_feedback(
    client: GitHubClient, repo: str, records: Sequence[dict[str, Any]], bot: str = DEFAULT_BOT, progress: bool = True
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The corrected examples among `records` (lines of `issuelab fetch` for `repo`) and the counts: issues the
    bot labeled, labels it added, kept and removed, labels people added after it, and its precision."""
    from tqdm.auto import tqdm

    check_repo(repo)
    examples = []
    for record in tqdm(records, desc="reading issue events", unit="issue", file=sys.stderr, disable=None if progress else True):
        found = corrections(client.issue_events(repo, record["number"]), bot)
        if found["bot_added"]:
            examples.append(dict(record, **found))
    return examples, {"issues_read": len(records)} | judged(examples)


def judged(examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The counts of corrected examples (`feedback`'s lines): what the bot added, what people removed and
    added after it, and the bot's precision as they judged it (kept / added)."""
    added = sum(len(e.get("bot_added", [])) for e in examples)
    removed = sum(len(e.get("removed_by_people", [])) for e in examples)
    return {"issues_labeled_by_bot": len(examples), "labels_added_by_bot": added, "labels_removed_by_people": removed,
            "labels_added_by_people": sum(len(e.get("added_by_people", [])) for e in examples),
            "precision_judged_by_people": round((added - removed) / added, 5) if added else None}  # fmt: skip


def read_feedback(path: str) -> list[dict[str, Any]]:
    rows = []
    for lineno, row in iter_jsonl(path):
        if not isinstance(row, dict) or not isinstance(row.get("bot_added"), list):
            raise DataError(f"{path}:{lineno}: no 'bot_added' list: use the output of `issuelab feedback`")
        rows.append(row)
    return rows


def feedback_run(client: GitHubClient, repo: str, data: str, out: str, bot: str = DEFAULT_BOT, last: int = 200) -> dict[str, Any]:
    """`issuelab feedback`: the events of the `last` most recent issues of `data` (a fetched JSONL), the
    corrected examples written to `out` (through a temporary file), the counts returned."""
    records = []
    for lineno, record in iter_jsonl(data):
        if not isinstance(record, dict) or not isinstance(record.get("number"), int):
            raise DataError(f"{data}:{lineno}: no integer 'number' (the issue number): use the output of `issuelab fetch`")
        if not record.get("pull_request"):
            records.append(record)
    records = sorted(records, key=lambda r: r["number"])[-last:] if last else records
    examples, summary = collect_feedback(client, repo, records, bot)
    write_jsonl(out, examples)
    return summary


def format_summary(summary: dict[str, Any], repo: str, bot: str) -> str:
    precision = summary["precision_judged_by_people"]
    judged = f"{precision:.1%}" if precision is not None else "n/a (it added no label)"
    return (f"### issuelab feedback: {repo}, labels added by `{bot}`\n\n"
            f"{summary['issues_labeled_by_bot']} of the {summary['issues_read']} issues read were labeled by the bot: "
            f"{summary['labels_added_by_bot']} labels added, {summary['labels_removed_by_people']} later removed by people, "
            f"{summary['labels_added_by_people']} added by people after it.\n"
            f"Precision as people judged it (kept / added): {judged}.\n")  # fmt: skip

"""`fetch`: a repository's issues into the dataset JSONL, incrementally.

Each GitHub issue becomes one line: id (the issue number), title, body, labels (the repository's own
label names), repo, number, url, author, state, created_at, updated_at, source "github". An existing
output file makes the fetch incremental: only issues updated since its newest `updated_at` are
asked for, changed ones are replaced in place and new ones appended, so nothing is duplicated.
The file is written once, at the end, through a temporary file: an interrupted fetch leaves the
previous file as it was.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ..data import iter_jsonl, write_jsonl
from ..errors import DataError
from .client import GitHubClient, check_repo


def issue_record(raw: dict[str, Any], repo: str) -> dict[str, Any]:
    """A GitHub issue object as a dataset line."""
    user = raw.get("user") or {}
    record = {
        "id": raw["number"],
        "title": raw.get("title") or "",
        "body": raw.get("body"),
        "labels": [label["name"] if isinstance(label, dict) else str(label) for label in raw.get("labels") or []],
        "repo": repo,
        "number": raw["number"],
        "url": raw.get("html_url", ""),
        "author": user.get("login", ""),
        "state": raw.get("state", ""),
        "created_at": raw.get("created_at", ""),
        "updated_at": raw.get("updated_at", ""),
        "source": "github",
    }
    if user.get("type") == "Bot":
        record["author_type"] = "Bot"
    if "pull_request" in raw:
        record["pull_request"] = True
    return record


def _read_existing(path: Path, repo: str) -> list[dict[str, Any]]:
    records = []
    for lineno, obj in iter_jsonl(path):
        if not isinstance(obj, dict) or not isinstance(obj.get("number"), int):
            raise DataError(f"{path}:{lineno}: not a line written by `issuelab fetch` (no integer 'number'); use another --out")
        if obj.get("repo") not in (None, repo):
            raise DataError(f"{path}:{lineno}: holds issues of {obj.get('repo')}, not {repo}; use another --out")
        records.append(obj)
    return records


def fetch_issues(
    client: GitHubClient,
    repo: str,
    out: str | Path,
    since: str | None = None,
    include_prs: bool = False,
    progress: bool = True,
) -> dict[str, int]:
    """Fetches into `out` (created or updated); returns counts: total, new, updated (changed), skipped_prs."""
    from tqdm.auto import tqdm

    check_repo(repo)
    out = Path(out)
    existing = _read_existing(out, repo) if out.exists() else []
    if since is None and existing:
        since = max((r.get("updated_at") or "" for r in existing), default="") or None
    position = {r["number"]: k for k, r in enumerate(existing)}
    records = list(existing)
    counts = {"new": 0, "updated": 0, "skipped_prs": 0}
    bar = tqdm(desc=f"fetching {repo}", unit="issue", file=sys.stderr, disable=None if progress else True)
    for raw in client.issues(repo, since=since):
        bar.update(1)
        if "pull_request" in raw and not include_prs:
            counts["skipped_prs"] += 1
            continue
        record = issue_record(raw, repo)
        if record["number"] in position:
            k = position[record["number"]]
            if records[k] != record:
                records[k] = record
                counts["updated"] += 1
        else:
            position[record["number"]] = len(records)
            records.append(record)
            counts["new"] += 1
    bar.close()
    write_jsonl(out, records)
    return dict(counts, total=len(records))

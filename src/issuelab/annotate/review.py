"""People review what the teachers agree on too little: `review export` writes the low-agreement issues
(CSV or JSONL, a `labels` column to edit, prefilled with the consensus); `review import` applies their
decisions, which then win (`source: human`).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..data import Issue, LabelSet, atomic_write, iter_jsonl, write_jsonl
from ..errors import DataError

REVIEW_COLUMNS = ["id", "title", "body", "agreement", "teachers", "labels"]


def export_review(records: Sequence[dict[str, Any]], out: str | Path, below: float) -> int:
    """Writes the issues with agreement under `below`; returns how many."""
    out = Path(out)
    chosen = [r for r in records if r.get("agreement", 1.0) < below]
    rows = [
        {"id": r["id"], "title": r["title"], "body": r.get("body") or "", "agreement": r.get("agreement"),
         "teachers": json.dumps(r.get("teachers", {}), ensure_ascii=False), "labels": ", ".join(r.get("labels", []))}
        for r in chosen
    ]  # fmt: skip
    if out.suffix.lower() == ".csv":

        def write(handle):
            writer = csv.DictWriter(handle, REVIEW_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)

        atomic_write(out, write)
    else:
        write_jsonl(out, rows)
    return len(rows)


def read_review(path: str | Path, label_set: LabelSet) -> dict[Any, list[str]]:
    """{issue id: labels} from an edited review file; `labels` comma-separated (CSV) or a list/string (JSONL)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    decisions: dict[Any, list[str]] = {}
    if path.suffix.lower() == ".csv":
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or "id" not in reader.fieldnames or "labels" not in reader.fieldnames:
                raise DataError(f"{path}: a review file needs 'id' and 'labels' columns (from `issuelab review export`)")
            rows = [(reader.line_num, row) for row in reader]
    else:
        rows = list(iter_jsonl(path))
    for lineno, row in rows:
        where = f"{path}:{lineno}"
        if not isinstance(row, dict) or "id" not in row or "labels" not in row:
            raise DataError(f"{where}: expected 'id' and 'labels'")
        raw = row["labels"]
        names = [x for x in (raw.split(",") if isinstance(raw, str) else raw) if str(x).strip()]
        issue_id = row["id"]
        if isinstance(issue_id, str) and issue_id.strip().isdigit():
            issue_id = int(issue_id)
        decisions[issue_id] = label_set.canonical(names, f"{where}: field 'labels'")
    return decisions


def apply_review(issues: Sequence[Issue], decisions: dict[Any, list[str]], source: str) -> tuple[list[Issue], int]:
    """People's labels replace the teachers' for the issues they reviewed; returns (issues, how many changed)."""
    known = {issue.id for issue in issues}
    unknown = [i for i in decisions if i not in known]
    if unknown:
        raise DataError(f"{source}: ids not in the labeled file: {unknown[:5]}{' ...' if len(unknown) > 5 else ''}")
    out, applied = [], 0
    for issue in issues:
        if issue.id in decisions:
            issue = Issue(issue.id, issue.title, issue.body, decisions[issue.id], dict(issue.extra, source="human"))
            applied += 1
        out.append(issue)
    return out, applied

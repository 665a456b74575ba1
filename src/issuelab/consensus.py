"""Several teachers, one answer: k-of-n votes, agreement statistics, and human review.

- A label is kept when at least `min_votes` teachers give it (0: a majority of the teachers that
  answered validly). An issue's agreement is the mean pairwise Jaccard of its valid answers.
- Per label, Cohen's kappa of each pair of teachers over the issues both answered, averaged.
- `review export` writes low-agreement issues for people (CSV or JSONL, a `labels` column to edit,
  prefilled with the consensus); `review import` applies their decisions, which then win.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .data import Issue, LabelSet, atomic_write, iter_jsonl
from .errors import DataError


def majority(n_valid: int) -> int:
    return n_valid // 2 + 1


def consensus(votes: dict[str, list[str] | None], label_names: Sequence[str], min_votes: int = 0) -> tuple[list[str], float]:
    """(labels in label-set order, agreement) from each teacher's labels (None: no valid answer)."""
    valid = [set(labels) for labels in votes.values() if labels is not None]
    if not valid:
        return [], 0.0
    k = min_votes or majority(len(valid))
    counts = {name: sum(name in answer for answer in valid) for name in label_names}
    return [name for name in label_names if counts[name] >= k], pairwise_jaccard(valid)


def pairwise_jaccard(answers: Sequence[set[str]]) -> float:
    if len(answers) < 2:
        return 1.0
    scores = [len(a & b) / len(a | b) if a | b else 1.0 for a, b in itertools.combinations(answers, 2)]
    return sum(scores) / len(scores)


def cohen_kappa(a: Sequence[bool], b: Sequence[bool]) -> float | None:
    """Agreement beyond chance of two raters' yes/no decisions; None when it is undefined (no variation)."""
    n = len(a)
    if n == 0:
        return None
    observed = sum(x == y for x, y in zip(a, b)) / n
    pa, pb = sum(a) / n, sum(b) / n
    expected = pa * pb + (1 - pa) * (1 - pb)
    if expected == 1.0:
        return None
    return (observed - expected) / (1 - expected)


def agreement_report(per_issue_votes: Sequence[dict[str, list[str] | None]], label_names: Sequence[str]) -> dict[str, Any]:
    teachers = sorted({name for votes in per_issue_votes for name in votes})
    pairs: dict[str, float] = {}
    kappas: dict[str, list[float]] = {name: [] for name in label_names}
    for t1, t2 in itertools.combinations(teachers, 2):
        both = [(set(v[t1]), set(v[t2])) for v in per_issue_votes if v.get(t1) is not None and v.get(t2) is not None]
        pairs[f"{t1} / {t2}"] = round(sum(pairwise_jaccard([a, b]) for a, b in both) / len(both), 4) if both else None
        for name in label_names:
            kappa = cohen_kappa([name in a for a, _ in both], [name in b for _, b in both])
            if kappa is not None:
                kappas[name].append(kappa)
    return {
        "teachers": teachers,
        "issues": len(per_issue_votes),
        "pairwise_jaccard": pairs,
        "per_label_kappa": {name: round(sum(v) / len(v), 4) if v else None for name, v in kappas.items()},
    }


# -- review ----------------------------------------------------------------------------------------

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
        atomic_write(out, lambda h: h.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
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

"""`import`: CSV or JSONL tables into dataset issues.

Columns `id`/`number`, `title`, `body`/`description`, `labels`/`label` are found by name; `mapping`
takes a field from another column; `label_sep` splits several labels in one cell (JSONL may hold
lists, also GitHub label objects). Every error names the file, the line and the column.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .data import OPTIONAL_FIELDS, Issue, LabelSet, iter_jsonl
from .errors import DataError

DEFAULT_COLUMNS = {
    "id": ("id", "number"),
    "title": ("title",),
    "body": ("body", "description"),
    "labels": ("labels", "label"),
}


def _resolve_columns(columns: Sequence[str], mapping: dict[str, str], path: Path) -> dict[str, str | None]:
    resolved: dict[str, str | None] = {}
    for target, candidates in DEFAULT_COLUMNS.items():
        if target in mapping:
            if mapping[target] not in columns:
                raise DataError(
                    f"{path}: --map {target}={mapping[target]}: column '{mapping[target]}' not found "
                    f"(columns: {', '.join(columns)})"
                )
            resolved[target] = mapping[target]
        else:
            resolved[target] = next((c for c in candidates if c in columns), None)
    for required in ("title", "labels"):
        if resolved[required] is None:
            raise DataError(
                f"{path}: column '{required}' not found (columns: {', '.join(columns)}); "
                f"map it with --map {required}=COLUMN"
            )
    unknown = set(mapping) - set(DEFAULT_COLUMNS)
    if unknown:
        raise DataError(f"--map: unknown field(s) {sorted(unknown)}; fields: {', '.join(DEFAULT_COLUMNS)}")
    return resolved


def _split_label_value(value: Any, sep: str, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(sep) if part.strip()]
    if isinstance(value, list):  # JSONL: names, or GitHub label objects {"name": ...}
        names = []
        for item in value:
            name = item.get("name") if isinstance(item, dict) else item
            if not isinstance(name, str):
                raise DataError(f"{where}: expected label names, got {item!r}")
            names.append(name)
        return names
    raise DataError(f"{where}: expected a string or a list of labels, got {value!r}")


def _table_rows(path: Path, fmt: str) -> tuple[list[str], Iterator[tuple[int, dict[str, Any]]]]:
    if fmt == "jsonl":
        rows = list(iter_jsonl(path))
        for lineno, obj in rows:
            if not isinstance(obj, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        columns = list(dict.fromkeys(k for _, obj in rows for k in obj))
        return columns, iter(rows)
    csv.field_size_limit(sys.maxsize)  # issue bodies can exceed the 128 kB default
    handle = path.open(encoding="utf-8-sig", newline="")
    reader = csv.reader(handle)
    try:
        header = next(reader)
    except StopIteration:
        handle.close()
        return [], iter(())
    except UnicodeDecodeError:
        handle.close()
        raise DataError(f"{path}: not valid UTF-8") from None

    def rows() -> Iterator[tuple[int, dict[str, Any]]]:
        with handle:
            while True:
                start = reader.line_num + 1
                try:
                    record = next(reader)
                except StopIteration:
                    return
                except csv.Error as e:
                    raise DataError(f"{path}:{start}: malformed CSV ({e})") from None
                except UnicodeDecodeError:
                    raise DataError(f"{path}:{start}: not valid UTF-8") from None
                if not record:
                    continue
                if len(record) != len(header):
                    raise DataError(f"{path}:{start}: expected {len(header)} columns, found {len(record)}")
                yield start, dict(zip(header, record))

    return header, rows()


def import_issues(
    path: str | Path,
    label_names: Sequence[str],
    *,
    mapping: dict[str, str] | None = None,
    label_sep: str = ",",
    aliases: dict[str, str] | None = None,
    drop_unknown: bool = False,
    repos: Sequence[str] = (),
    fmt: str | None = None,
    first_id: int = 1,
    labeled_only: bool = False,
) -> tuple[list[Issue], int]:
    """Reads a CSV or JSONL table; returns the issues and the number of data rows read.

    Without an id column, ids number the data rows from `first_id`; rows filtered out by `repos`
    keep their number, so an issue's id does not depend on the filter."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    fmt = fmt or ("jsonl" if path.suffix.lower() in (".jsonl", ".json", ".ndjson") else "csv")
    if fmt not in ("csv", "jsonl"):
        raise DataError(f"--format {fmt}: use csv or jsonl")
    columns, rows = _table_rows(path, fmt)
    if not columns:
        raise DataError(f"{path}: no rows (the file is empty)")
    cols = _resolve_columns(columns, mapping or {}, path)
    if repos and "repo" not in columns:
        raise DataError(f"{path}: --repo given but the file has no 'repo' column (columns: {', '.join(columns)})")
    label_set = LabelSet(label_names, aliases, drop_unknown)
    issues, index = [], first_id - 1
    for index, (lineno, row) in enumerate(rows, start=first_id):
        if repos and row.get("repo") not in repos:
            continue
        where = f"{path}:{lineno}"
        title = row.get(cols["title"])
        if not isinstance(title, str):
            raise DataError(f"{where}: field '{cols['title']}' (title): expected a string, got {title!r}")
        body = row.get(cols["body"]) if cols["body"] else None
        if body is not None and not isinstance(body, str):
            raise DataError(f"{where}: field '{cols['body']}' (body): expected a string or null")
        issue_id: Any = row.get(cols["id"]) if cols["id"] else index
        if isinstance(issue_id, str) and issue_id.strip().isdigit():
            issue_id = int(issue_id)
        if issue_id is None or issue_id == "":
            raise DataError(f"{where}: field '{cols['id']}' (id) is empty")
        raw_labels = _split_label_value(row.get(cols["labels"]), label_sep, f"{where}: field '{cols['labels']}'")
        labels = label_set.canonical(raw_labels, f"{where}: field '{cols['labels']}'")
        if labeled_only and not labels:
            continue
        extra = {k: row[k] for k in OPTIONAL_FIELDS if k in row and row[k] not in (None, "")}
        issues.append(Issue(issue_id, title, body, labels, extra))
    if not issues:
        hint = f" for --repo {', '.join(repos)}" if repos else ""
        hint += " (none has a label of the config; see --alias)" if labeled_only else ""
        raise DataError(f"{path}: no issues imported{hint}")
    return issues, index - first_id + 1


def import_files(paths: Sequence[str | Path], label_names: Sequence[str], **options: Any) -> list[Issue]:
    """Several tables, one dataset: without an id column, ids number the data rows across the files
    (options as for `import_issues`)."""
    issues, next_id = [], 1
    for path in paths:
        imported, rows = import_issues(path, label_names, first_id=next_id, **options)
        issues += imported
        next_id += rows
    return issues

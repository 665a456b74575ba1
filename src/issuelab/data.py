"""The data model (Label, Issue, LabelSet) and the dataset JSONL, read and written losslessly; atomic
writes (a temporary file renamed into place). `import` from CSV or JSONL is `issuelab.importers`.

One issue per line: {"id": 123, "title": "...", "body": "... or null", "labels": ["bug"]} plus
optional fields (repo, number, url, created_at, author, source; predictions add output, scores),
kept in order. Every error names the file, the line and the field.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .errors import DataError

OPTIONAL_FIELDS = ("repo", "number", "url", "created_at", "author", "source")


@dataclass(frozen=True)
class Label:
    name: str
    description: str


class LabelList:
    """Names and (name, description) pairs of a `labels` list: mixed into Config and engines' Task."""

    labels: Sequence[Label]

    @property
    def label_names(self) -> list[str]:
        return [label.name for label in self.labels]

    @property
    def label_pairs(self) -> list[tuple[str, str]]:
        return [(label.name, label.description) for label in self.labels]


@dataclass
class Issue:
    id: int | str
    title: str
    body: str | None
    labels: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # optional fields, in file order

    @property
    def text(self) -> str:
        return f"{self.title}\n\n{self.body or ''}"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "body": self.body, "labels": self.labels, **self.extra}


class LabelSet:
    """Maps label spellings (case-insensitive, plus aliases) to the config's names."""

    def __init__(self, names: Sequence[str], aliases: dict[str, str] | None = None, drop_unknown: bool = False):
        self.names = list(names)
        self.lookup = {name.lower(): name for name in self.names}
        for alias, target in (aliases or {}).items():
            if target.lower() not in self.lookup:
                raise DataError(f"--alias {alias}={target}: '{target}' is not a label of the config")
            self.lookup[alias.lower()] = self.lookup[target.lower()]
        self.drop_unknown = drop_unknown

    def canonical(self, labels: Iterable[str], where: str) -> list[str]:
        out: list[str] = []
        for label in labels:
            name = self.lookup.get(label.strip().lower())
            if name is None:
                if self.drop_unknown:
                    continue
                raise DataError(
                    f"{where}: unknown label '{label}' (labels: {', '.join(self.names)}). "
                    f"Add it to [labels] in the config, map it with --alias '{label}=LABEL', or pass --drop-unknown."
                )
            if name not in out:
                out.append(name)
        return out


def _issue_from_dict(obj: Any, where: str, label_set: LabelSet | None, require_labels: bool) -> Issue:
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if "id" not in obj:
        raise DataError(f"{where}: field 'id' is missing")
    issue_id = obj["id"]
    if not isinstance(issue_id, int | str) or isinstance(issue_id, bool):
        raise DataError(f"{where}: field 'id': expected an integer or a string, got {issue_id!r}")
    title = obj.get("title")
    if not isinstance(title, str):
        raise DataError(f"{where}: field 'title': expected a string, got {title!r}")
    body = obj.get("body")
    if body is not None and not isinstance(body, str):
        raise DataError(f"{where}: field 'body': expected a string or null, got {type(body).__name__}")
    if "labels" not in obj and require_labels:
        raise DataError(f"{where}: field 'labels' is missing (a list of label names, [] for none)")
    labels = obj.get("labels", [])
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise DataError(f"{where}: field 'labels': expected a list of strings, got {labels!r}")
    if label_set is not None:
        labels = label_set.canonical(labels, f"{where}: field 'labels'")
    extra = {k: v for k, v in obj.items() if k not in ("id", "title", "body", "labels")}
    return Issue(issue_id, title, body, labels, extra)


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """Yields (line number, parsed object) for each non-blank line. Lines are split on "\n" alone
    (JSON escapes it inside strings; CRLF files lose the "\r") and decoded one by one, so an error
    names its line and byte offset."""
    path = Path(path)
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory; give a JSONL file (one issue per line)") from None
    offset = 0
    with handle:
        for lineno, raw in enumerate(handle, start=1):
            start, offset = offset, offset + len(raw)
            try:
                line = raw.decode("utf-8").removesuffix("\n").removesuffix("\r")
            except UnicodeDecodeError as e:
                raise DataError(f"{path}:{lineno}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1}, "
                                f"file offset {start + e.start}); save the file as UTF-8") from None  # fmt: skip
            if lineno == 1:
                line = line.removeprefix("\ufeff")  # a byte-order mark some editors write
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: malformed JSON ({e.msg} at column {e.colno})") from None


def read_issues(
    path: str | Path,
    label_names: Sequence[str] | None = None,
    *,
    aliases: dict[str, str] | None = None,
    drop_unknown: bool = False,
    require_labels: bool = True,
    allow_empty: bool = False,
) -> list[Issue]:
    label_set = LabelSet(label_names, aliases, drop_unknown) if label_names is not None else None
    issues = [
        _issue_from_dict(obj, f"{path}:{lineno}", label_set, require_labels) for lineno, obj in iter_jsonl(path)
    ]
    if not issues and not allow_empty:
        raise DataError(f"{path}: no issues in the file (it is empty)")
    return issues


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[IO[str]], None]) -> None:
    """Writes to a temporary file beside `path`, then renames: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; the file gets what open() would give it
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def dumps_line(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False) + "\n"


def write_jsonl(path: str | Path, rows: Iterable[Issue | dict[str, Any]]) -> None:
    def write(handle: IO[str]) -> None:
        for row in rows:
            handle.write(dumps_line(row.to_dict() if isinstance(row, Issue) else row))

    atomic_write(path, write)


def write_json(path: str | Path, obj: Any, indent: int | None = 2) -> None:
    atomic_write(path, lambda handle: handle.write(json.dumps(obj, ensure_ascii=False, indent=indent) + "\n"))


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def issue_reference(issue: Issue) -> str:
    """How evidence names a past issue: its URL when known, else #number, else its id."""
    url, number = issue.extra.get("url"), issue.extra.get("number")
    return str(url) if url else f"#{number}" if number is not None else str(issue.id)

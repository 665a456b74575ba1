"""Every teacher request and answer, in SQLite, keyed by (teacher, model, prompt hash, issue hash).

A second run asks nothing that is cached; a killed run loses only the requests in flight (each answer
is committed as it arrives; WAL journal); changing an issue's text or the prompt changes a hash, so only
what changed is asked again. Failed requests (network, exhausted retries) are not stored.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError

SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    teacher TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt_hash TEXT NOT NULL,
    issue_hash TEXT NOT NULL,
    status TEXT NOT NULL,            -- ok | invalid
    labels TEXT NOT NULL,            -- JSON list (empty when invalid)
    raw TEXT NOT NULL,               -- JSON list of the raw answers (the first, then the repair's)
    request TEXT NOT NULL,           -- JSON messages of the first request
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost REAL NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (teacher, model, prompt_hash, issue_hash)
)
"""


@dataclass
class Answer:
    status: str  # "ok" | "invalid"
    labels: list[str]
    raw: list[str]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    cached: bool = False


class AnnotationCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(SCHEMA)
        except sqlite3.DatabaseError as e:
            raise DataError(f"{self.path}: not an issuelab annotation cache ({e}); pass another --cache") from None
        self._lock = threading.Lock()

    def get(self, teacher: str, model: str, prompt_hash: str, issue_hash: str) -> Answer | None:
        with self._lock:
            row = self._db.execute(
                "SELECT status, labels, raw, prompt_tokens, completion_tokens, cost FROM answers "
                "WHERE teacher=? AND model=? AND prompt_hash=? AND issue_hash=?",
                (teacher, model, prompt_hash, issue_hash),
            ).fetchone()
        if row is None:
            return None
        status, labels, raw, prompt_tokens, completion_tokens, cost = row
        return Answer(status, json.loads(labels), json.loads(raw), prompt_tokens, completion_tokens, cost, cached=True)

    def put(self, teacher: str, model: str, prompt_hash: str, issue_hash: str, answer: Answer, request: list[dict]) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (teacher, model, prompt_hash, issue_hash, answer.status, json.dumps(answer.labels),
                 json.dumps(answer.raw, ensure_ascii=False), json.dumps(request, ensure_ascii=False),
                 answer.prompt_tokens, answer.completion_tokens, answer.cost, time.time()),
            )  # fmt: skip

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

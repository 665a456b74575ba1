"""Every teacher request and answer, in SQLite, keyed by (teacher, model, prompt hash, issue hash).

A second run asks nothing that is cached; a killed run loses only the requests in flight (each answer
is committed as it arrives; WAL journal); changing an issue's text or the prompt changes a hash, so only
what changed is asked again. Failed requests (network, exhausted retries) are not stored as answers.

Spending is logged too: every request is written to `requests` before it is sent, and settled when its
answer is stored (or it fails). A request still "sent" when a run starts was sent by a run that died
before storing the answer: it was probably paid for, and counts (at its estimate) in `spending()`, the
data set's total over all runs.
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
);
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    teacher TEXT NOT NULL,
    model TEXT NOT NULL,
    issue_hash TEXT NOT NULL,
    estimated_cost REAL NOT NULL,
    cost REAL,                       -- the answer's, once stored
    state TEXT NOT NULL,             -- sent | answered | failed
    sent_at REAL NOT NULL
);
"""


@dataclass
class Spending:
    """What a cache's requests cost over all runs."""

    answered: int = 0
    answered_cost: float = 0.0
    lost: int = 0  # sent, never settled: the run died before storing the answer
    lost_estimate: float = 0.0

    @property
    def total(self) -> float:
        return self.answered_cost + self.lost_estimate


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
            self._db.executescript(SCHEMA)
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

    def sent(self, teacher: str, model: str, issue_hash: str, estimated_cost: float) -> int:
        """Logs a request about to be sent (committed first: a kill after it still counts it); returns its id."""
        with self._lock:
            cursor = self._db.execute("INSERT INTO requests (teacher, model, issue_hash, estimated_cost, state, sent_at) "
                                      "VALUES (?, ?, ?, ?, 'sent', ?)", (teacher, model, issue_hash, estimated_cost, time.time()))  # fmt: skip
            return cursor.lastrowid

    def failed(self, request_id: int) -> None:
        with self._lock:
            self._db.execute("UPDATE requests SET state = 'failed' WHERE id = ?", (request_id,))

    def spending(self) -> Spending:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*), SUM(COALESCE(cost, estimated_cost)) FROM requests GROUP BY state").fetchall()
        by_state = {state: (count, total or 0.0) for state, count, total in rows}
        (answered, answered_cost), (lost, lost_estimate) = by_state.get("answered", (0, 0.0)), by_state.get("sent", (0, 0.0))
        return Spending(answered, answered_cost, lost, lost_estimate)

    def put(self, teacher: str, model: str, prompt_hash: str, issue_hash: str, answer: Answer, request: list[dict],
            request_id: int | None = None) -> None:  # fmt: skip
        with self._lock:
            self._db.execute("BEGIN")  # the answer and its request's settlement in one transaction
            try:
                if request_id is not None:
                    self._db.execute("UPDATE requests SET state = 'answered', cost = ? WHERE id = ?", (answer.cost, request_id))
                self._db.execute(
                    "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (teacher, model, prompt_hash, issue_hash, answer.status, json.dumps(answer.labels),
                     json.dumps(answer.raw, ensure_ascii=False), json.dumps(request, ensure_ascii=False),
                     answer.prompt_tokens, answer.completion_tokens, answer.cost, time.time()),
                )  # fmt: skip
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

"""The webhook service's durable state: accepted deliveries and labeling jobs in one SQLite database.

A delivery is committed here (WAL, synchronous=FULL) before the service answers 2xx, so that a crash,
`kill -9` or power cut after the answer loses nothing: on restart every job not marked done is taken up
again. Delivery ids are kept too, so a redelivery after a restart is still recognised. A job is
claimed with a lease (a worker that hangs past it loses the job to another); a failed attempt goes back
with a delay (exponential backoff with jitter, or what GitHub's rate-limit headers ask) until its retry
window closes, then the job is marked failed with its reason (`replay_failed` puts those back).
Deliveries for an issue that already has a job waiting are folded into it: labeling re-reads the issue
and adds only what is missing, so one pass serves them all.

One service process owns a state file (jobs it had claimed when it died are reclaimed at once on start).
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (id TEXT PRIMARY KEY, received REAL NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    repo TEXT NOT NULL,
    number INTEGER NOT NULL,
    delivery TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    not_before REAL NOT NULL,
    lease_until REAL NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX IF NOT EXISTS one_waiting_job_per_issue ON jobs (repo, number) WHERE state = 'queued';
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, not_before);
"""
DELIVERIES_KEPT = 200_000  # ids remembered for redeliveries (GitHub redelivers within days, by hand or by a script)


@dataclass(frozen=True)
class Job:
    id: int
    repo: str
    number: int
    delivery: str
    attempts: int  # before this one
    created: float


class JobQueue:
    """Jobs and delivery ids in SQLite; safe to share between threads (one connection, one lock)."""

    def __init__(self, path: str | Path, *, max_queued: int = 10_000, lease_seconds: float = 300.0, retry_window: float = 3600.0,
                 backoff: float = 2.0, max_backoff: float = 30.0, keep_deliveries: int = DELIVERIES_KEPT):  # fmt: skip
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_queued, self.lease_seconds, self.retry_window = max_queued, lease_seconds, retry_window
        self.backoff, self.max_backoff = backoff, max_backoff
        self.keep_deliveries = keep_deliveries
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a 2xx is a promise: the commit is on disk first
        self._db.executescript(SCHEMA)
        self.reclaimed = self._reclaim()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _reclaim(self) -> int:
        """Jobs a previous process had claimed when it stopped: waiting again, at once."""
        with self._lock:
            running = [row[0] for row in self._db.execute("SELECT id FROM jobs WHERE state = 'running'")]
            for job_id in running:
                self._requeue(job_id, "lease_until = 0", ())
        return len(running)

    def _requeue(self, job_id: int, assignments: str, values: tuple) -> None:
        """Puts a job back in the queue (caller holds the lock); where its issue already has a job waiting,
        that one will do the work and this one is closed as folded into it."""
        try:
            self._db.execute(f"UPDATE jobs SET state = 'queued', {assignments} WHERE id = ?", (*values, job_id))
        except sqlite3.IntegrityError:
            self._db.execute("UPDATE jobs SET state = 'done', error = 'folded into a job waiting for the same issue' WHERE id = ?", (job_id,))

    def enqueue(self, delivery: str, repo: str, number: int) -> str:
        """Records a delivery and its job in one transaction: "queued", "coalesced" (the issue already has a
        job waiting), "duplicate" (this delivery id was seen) or "full" (nothing recorded: answer 503 and
        GitHub's redelivery, later, is accepted)."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if delivery and self._db.execute("SELECT 1 FROM deliveries WHERE id = ?", (delivery,)).fetchone():
                    self._db.execute("ROLLBACK")
                    return "duplicate"
                already = self._db.execute("SELECT 1 FROM jobs WHERE repo = ? AND number = ? AND state = 'queued'", (repo, number)).fetchone()
                waiting = self._db.execute("SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')").fetchone()[0]
                if waiting >= self.max_queued and not already:  # folding into a waiting job costs no room
                    self._db.execute("ROLLBACK")
                    return "full"
                if delivery:
                    self._db.execute("INSERT INTO deliveries VALUES (?, ?)", (delivery, now))
                if not already:  # the transaction holds the write lock: no job for the issue can appear meanwhile
                    self._db.execute("INSERT INTO jobs (repo, number, delivery, state, created, not_before) VALUES (?, ?, ?, 'queued', ?, ?)",
                                     (repo, number, delivery, now, now))  # fmt: skip
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return "coalesced" if already else "queued"

    def claim(self) -> Job | None:
        """The oldest job due (or one whose lease ran out), leased to the caller."""
        now = time.time()
        with self._lock:
            row = self._db.execute(
                "UPDATE jobs SET state = 'running', lease_until = ? WHERE id = ("
                " SELECT id FROM jobs WHERE (state = 'queued' AND not_before <= ?) OR (state = 'running' AND lease_until < ?)"
                " ORDER BY not_before, id LIMIT 1) RETURNING id, repo, number, delivery, attempts, created",
                (now + self.lease_seconds, now, now),
            ).fetchone()  # fmt: skip
        return Job(*row) if row else None

    def done(self, job: Job) -> None:
        with self._lock:
            self._db.execute("UPDATE jobs SET state = 'done', error = '' WHERE id = ?", (job.id,))

    def retry_or_fail(self, job: Job, error: str, wait: float | None = None) -> tuple[str, float]:
        """After a failed attempt that may succeed later: back in the queue after `wait` seconds (GitHub's
        Retry-After) or exponential backoff with jitter, unless that would pass the retry window, in which
        case the job fails. Returns ("retry", delay) or ("failed", 0)."""
        delay = wait if wait is not None else min(self.max_backoff, self.backoff * 2**job.attempts) * (0.5 + random.random() / 2)
        now = time.time()
        if now + delay > job.created + self.retry_window:
            self.fail(job, f"{error} (still failing after {job.attempts + 1} attempts over {now - job.created:.0f} s)")
            return "failed", 0.0
        with self._lock:
            self._requeue(job.id, "attempts = attempts + 1, not_before = ?, lease_until = 0, error = ?", (now + delay, error))
        return "retry", delay

    def fail(self, job: Job, error: str) -> None:
        with self._lock:
            self._db.execute("UPDATE jobs SET state = 'failed', attempts = attempts + 1, error = ? WHERE id = ?", (error, job.id))

    def replay_failed(self) -> int:
        """Failed jobs back in the queue, with a fresh retry window."""
        now = time.time()
        with self._lock:
            failed = [row[0] for row in self._db.execute("SELECT id FROM jobs WHERE state = 'failed'")]
            for job_id in failed:
                self._requeue(job_id, "attempts = 0, created = ?, not_before = ?, error = ''", (now, now))
        return len(failed)

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall()
        return {"queued": 0, "running": 0, "done": 0, "failed": 0} | dict(rows)

    def failures(self, limit: int = 20) -> list[dict]:
        with self._lock:
            rows = self._db.execute("SELECT repo, number, delivery, attempts, error FROM jobs WHERE state = 'failed' ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [dict(zip(("repo", "number", "delivery", "attempts", "error"), row)) for row in rows]

    def next_due_in(self) -> float | None:
        """Seconds until the next waiting job is due (0 if one is), None if none waits."""
        with self._lock:
            row = self._db.execute("SELECT min(not_before) FROM jobs WHERE state = 'queued'").fetchone()
        return None if row[0] is None else max(0.0, row[0] - time.time())

    def prune(self, keep_deliveries: int | None = None, keep_finished_days: float = 30.0) -> None:
        """Forgets the oldest delivery ids beyond `keep_deliveries` (default: the queue's) and jobs done long ago."""
        keep = self.keep_deliveries if keep_deliveries is None else keep_deliveries
        with self._lock:
            self._db.execute("DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries ORDER BY received DESC LIMIT -1 OFFSET ?)", (keep,))
            self._db.execute("DELETE FROM jobs WHERE state = 'done' AND created < ?", (time.time() - keep_finished_days * 86400,))

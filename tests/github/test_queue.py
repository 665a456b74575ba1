"""The webhook service's SQLite job queue: what is committed survives, leases, retries, folding."""

from __future__ import annotations

import threading
import time

from issuelab.github.client import GitHubError
from issuelab.github.queue import JobQueue
from issuelab.github.serve import retryable

REPO = "acme/widgets"


def test_jobs_and_delivery_ids_survive_a_new_process(tmp_path):
    first = JobQueue(tmp_path / "q.sqlite3")
    assert [first.enqueue(f"d{k}", REPO, k) for k in (1, 2)] == ["queued", "queued"]
    running = first.claim()
    first._db.close()  # no orderly close: as after kill -9
    second = JobQueue(tmp_path / "q.sqlite3")
    assert second.reclaimed == 1 and second.counts()["queued"] == 2
    assert second.enqueue("d1", REPO, 1) == "duplicate"
    assert {second.claim().number, second.claim().number} == {1, 2} and running.number == 1


def test_deliveries_for_a_waiting_issue_fold_into_its_job(tmp_path):
    queue = JobQueue(tmp_path / "q.sqlite3")
    outcomes: list[str] = []
    threads = [threading.Thread(target=lambda k=k: outcomes.append(queue.enqueue(f"d{k}", REPO, 7))) for k in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["coalesced"] * 9 + ["queued"]
    job = queue.claim()
    assert queue.enqueue("later", REPO, 7) == "queued"  # the issue changed while its job runs: one more pass
    assert queue.retry_or_fail(job, "HTTP 502")[0] == "retry"  # back in the queue: folded into the waiting one
    assert queue.counts() == {"queued": 1, "running": 0, "done": 1, "failed": 0}


def test_an_expired_lease_lets_another_worker_take_the_job(tmp_path):
    queue = JobQueue(tmp_path / "q.sqlite3", lease_seconds=0.05)
    queue.enqueue("d", REPO, 1)
    first = queue.claim()
    assert queue.claim() is None
    time.sleep(0.1)
    assert queue.claim().id == first.id


def test_retries_back_off_honour_retry_after_and_end_in_failed_with_the_reason(tmp_path):
    queue = JobQueue(tmp_path / "q.sqlite3", backoff=10.0, retry_window=100.0)
    queue.enqueue("d", REPO, 1)
    job = queue.claim()
    outcome, delay = queue.retry_or_fail(job, "HTTP 502")
    assert outcome == "retry" and 5.0 <= delay <= 10.0 and queue.claim() is None  # not due yet
    assert 4.0 < queue.next_due_in() <= 10.0
    queue._db.execute("UPDATE jobs SET not_before = 0")
    job = queue.claim()
    assert job.attempts == 1 and queue.retry_or_fail(job, "rate limit", wait=30.0) == ("retry", 30.0)
    queue._db.execute("UPDATE jobs SET not_before = 0")
    job = queue.claim()
    assert queue.retry_or_fail(job, "HTTP 502 again", wait=200.0) == ("failed", 0.0)  # past the window
    [failure] = queue.failures()
    assert failure["attempts"] == 3 and failure["error"].startswith("HTTP 502 again (still failing after 3 attempts")
    assert queue.replay_failed() == 1 and queue.claim().number == 1


def test_prune_forgets_the_oldest_delivery_ids(tmp_path):
    queue = JobQueue(tmp_path / "q.sqlite3")
    for k in range(5):
        queue.enqueue(f"d{k}", REPO, k + 1)
        time.sleep(0.002)
    queue.prune(keep_deliveries=2)
    assert [queue.enqueue(f"d{k}", REPO, 1) for k in range(5)] == ["coalesced", "coalesced", "coalesced", "duplicate", "duplicate"]


def test_which_errors_are_retried():
    assert retryable(GitHubError("HTTP 502", 502)) == (True, None)
    assert retryable(GitHubError("rate limit", 403, retry_after=42.0)) == (True, 42.0)
    assert retryable(GitHubError("cannot reach", None)) == (True, None)
    assert retryable(TimeoutError("timed out")) == (True, None)
    assert retryable(GitHubError("HTTP 404", 404)) == (False, None)
    assert retryable(GitHubError("HTTP 403: permission", 403)) == (False, None)
    assert retryable(ValueError("a bug")) == (False, None)

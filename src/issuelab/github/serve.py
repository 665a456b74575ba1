"""`serve`: a GitHub webhook service (plain ASGI, run by uvicorn) for organisations.

    POST /webhook   verified with X-Hub-Signature-256 (HMAC-SHA256 of the raw body with
                    GITHUB_WEBHOOK_SECRET, compared in constant time) before anything is parsed;
                    `ping` answered; `issues.opened` (and the actions asked for) committed to the
                    state database (`github.queue`), then answered 202 and labeled by the workers;
                    a delivery id seen before is answered 200 and ignored, even after a restart;
                    a full queue answers 503 with Retry-After; bodies over the size limit get 413,
                    bodies that stop arriving get 408 after `read_timeout`.
    GET  /healthz   status, model, jobs queued / running / done / failed, duplicates, retries.
    GET  /metrics   Prometheus text: deliveries by outcome, jobs finished by result, retries, jobs by
                    state (queue depth), time from acceptance to a job's end (histogram).

A 2xx means the job is on disk: after a crash the next start takes up every job not done. GitHub's 5xx,
rate limits and network errors are retried with backoff for an hour, then the job is marked failed with
its reason (`issuelab serve --replay-failed` puts failed jobs back). Shutdown lets jobs in progress finish
for up to `drain_seconds` and leaves the rest in the database.

Logs are JSON lines on stderr: one per request, one per labeled issue, one per retry; never a secret.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import sys
import threading
import time
from typing import Any

from ..errors import IssuelabError
from .client import GitHubError
from .events import EventError, issue_target
from .labeling import GitHubLabeler
from .queue import Job, JobQueue

MAX_BODY_BYTES = 1 << 20  # GitHub caps payloads at 25 MB, but an issue event is a few kB
RETRY_AFTER_WHEN_FULL = 60  # seconds, in the 503 of a full queue
log = logging.getLogger("issuelab.serve")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)), "level": record.levelname.lower(),
                 "event": record.getMessage()}  # fmt: skip
        entry.update(getattr(record, "fields", {}))
        return json.dumps(entry, ensure_ascii=False)


def github_log(message: str) -> None:
    """The GitHub client's retry messages, as JSON log lines."""
    log.warning("github", extra={"fields": {"detail": message}})


def configure_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


def signature_ok(secret: bytes, body: bytes, header: str | None) -> bool:
    if not header or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.encode())


class ServiceMetrics:
    """Prometheus metrics of one service (its own registry, so that several apps in a process do not mix)."""

    def __init__(self, queue: JobQueue):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.deliveries = Counter("issuelab_deliveries", "Webhook deliveries by outcome", ["outcome"], registry=self.registry)
        self.jobs = Counter("issuelab_jobs_finished", "Labeling jobs finished, by result", ["result"], registry=self.registry)
        self.retries = Counter("issuelab_job_retries", "Labeling attempts that will be retried", registry=self.registry)
        self.latency = Histogram("issuelab_job_seconds", "Time from a delivery's acceptance to its job's end", registry=self.registry,
                                 buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600))  # fmt: skip
        depth = Gauge("issuelab_jobs", "Jobs in the state file, by state", ["state"], registry=self.registry)
        for state in ("queued", "running", "failed"):
            depth.labels(state).set_function(lambda state=state: queue.counts()[state])

    def text(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class WebhookApp:
    def __init__(self, github_labeler: GitHubLabeler, secret: str, queue: JobQueue, *, actions: tuple[str, ...] = ("opened",),
                 max_body: int = MAX_BODY_BYTES, workers: int = 8, model_name: str = "", read_timeout: float = 10.0,
                 drain_seconds: float = 20.0, prune_every: float = 3600.0):  # fmt: skip
        if not secret:
            raise ValueError("a webhook secret is required (GITHUB_WEBHOOK_SECRET)")
        self.github_labeler = github_labeler
        self._secret = secret.encode()
        self.queue = queue
        self.actions = actions
        self.max_body = max_body
        self.model_name = model_name
        self.read_timeout = read_timeout
        self.drain_seconds = drain_seconds
        self.workers = workers
        self.prune_every = prune_every  # seconds between forgetting old delivery ids and old finished jobs
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self.metrics = ServiceMetrics(queue)

    @property
    def counts(self) -> dict[str, int]:
        """Deliveries ignored, folded and refused, and retries, since start (read from the metrics)."""
        value = self.metrics.registry.get_sample_value
        outcomes = {"duplicates": "duplicate", "coalesced": "coalesced", "refused_full": "full"}
        counts = {key: int(value("issuelab_deliveries_total", {"outcome": outcome}) or 0) for key, outcome in outcomes.items()}
        return counts | {"retries": int(value("issuelab_job_retries_total") or 0)}

    def status(self) -> dict[str, Any]:
        return {"status": "ok", "model": self.model_name, **self.queue.counts(), **self.counts}

    # -- workers -------------------------------------------------------------------------------

    def start(self) -> None:
        if self.queue.reclaimed:
            log.warning("jobs taken up again", extra={"fields": {"jobs": self.queue.reclaimed, "state": str(self.queue.path)}})
        self._threads = [threading.Thread(target=self._work, name=f"issuelab-label-{k}", daemon=True) for k in range(self.workers)]
        for thread in self._threads:
            thread.start()
        threading.Thread(target=self._housekeeping, name="issuelab-prune", daemon=True).start()

    def _housekeeping(self) -> None:
        """Keeps the state file bounded: the newest delivery ids and recent finished jobs stay."""
        while True:
            try:
                self.queue.prune()
            except Exception:  # a busy or broken database must not stop the service; the next round tries again
                log.exception("pruning the state file failed")
            if self._stopping.wait(self.prune_every):
                return

    def stop(self) -> None:
        """Lets the jobs in progress finish for up to `drain_seconds`; the rest stay in the database."""
        self._stopping.set()
        self._wake.set()
        deadline = time.monotonic() + self.drain_seconds
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        left = sum(thread.is_alive() for thread in self._threads)
        counts = self.queue.counts()
        log.info("stopped", extra={"fields": {"queued": counts["queued"], "unfinished": left}})

    def _work(self) -> None:
        while not self._stopping.is_set():
            job = self.queue.claim()
            if job is None:
                due = self.queue.next_due_in()
                self._wake.wait(1.0 if due is None else min(1.0, due))
                self._wake.clear()
                continue
            self._label(job)

    def _label(self, job: Job) -> None:
        started = time.perf_counter()
        fields = {"delivery": job.delivery, "repo": job.repo, "issue": job.number, "attempt": job.attempts + 1}
        try:
            decision = self.github_labeler.label_issue(job.repo, job.number)
        except Exception as e:  # a failed job must not kill the worker: retried, or failed with its reason
            error = f"{type(e).__name__}: {e}"
            retry, wait = retryable(e)
            if retry:
                outcome, delay = self.queue.retry_or_fail(job, error, wait)
            else:
                self.queue.fail(job, error)
                outcome, delay = "failed", 0.0
            if outcome == "retry":
                self.metrics.retries.inc()
                log.warning("label retry", extra={"fields": dict(fields, error=error, retry_in_s=round(delay, 1))})
            else:
                self.metrics.jobs.labels("failed").inc()
                log.error("label failed", extra={"fields": dict(fields, error=error)})
            return
        self.queue.done(job)
        self.metrics.jobs.labels(decision.action).inc()
        self.metrics.latency.observe(max(0.0, time.time() - job.created))
        log.info("labeled" if decision.action == "label" else decision.action, extra={"fields": dict(
            fields, labels=decision.labels, reason=decision.reason, dry_run=decision.dry_run,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )})  # fmt: skip

    # -- ASGI ----------------------------------------------------------------------------------

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        path, method = scope.get("path", ""), scope.get("method", "")
        extra_headers: list[tuple[bytes, bytes]] = []
        if path == "/healthz" and method in ("GET", "HEAD"):
            status, body = 200, await asyncio.to_thread(self.status)
        elif path == "/metrics" and method == "GET":
            from prometheus_client import CONTENT_TYPE_LATEST

            await _respond(send, 200, await asyncio.to_thread(self.metrics.text), content_type=CONTENT_TYPE_LATEST)
            return
        elif path == "/webhook" and method == "POST":
            status, body = await self._webhook(headers, receive)
            if status == 503:
                extra_headers.append((b"retry-after", str(RETRY_AFTER_WHEN_FULL).encode()))
        elif path in ("/healthz", "/webhook", "/metrics"):
            status, body = 405, {"error": "method not allowed"}
        else:
            status, body = 404, {"error": "not found"}
        await _respond(send, status, body, extra_headers)
        log.info("request", extra={"fields": {
            "method": method, "path": path, "status": status, "ms": round((time.perf_counter() - started) * 1000, 2),
            "delivery": headers.get("x-github-delivery", ""), "github_event": headers.get("x-github-event", ""),
        }})  # fmt: skip

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.to_thread(self.stop)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _read_body(self, headers: dict[str, str], receive) -> tuple[int, dict[str, Any]] | bytes:
        try:
            declared = int(headers.get("content-length", "0") or 0)
        except ValueError:
            return 400, {"error": "bad Content-Length"}
        if declared > self.max_body:
            return 413, {"error": f"body over {self.max_body} bytes"}
        chunks, size = [], 0
        while True:
            try:  # a client that stops sending mid-body is not waited on forever
                message = await asyncio.wait_for(receive(), self.read_timeout)
            except TimeoutError:
                return 408, {"error": f"the body did not arrive within {self.read_timeout:g} s"}
            if message["type"] == "http.disconnect":
                return 400, {"error": "client disconnected"}
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return 413, {"error": f"body over {self.max_body} bytes"}
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    async def _webhook(self, headers: dict[str, str], receive) -> tuple[int, dict[str, Any]]:
        body = await self._read_body(headers, receive)
        if isinstance(body, tuple):
            return body
        if not signature_ok(self._secret, body, headers.get("x-hub-signature-256")):
            return 401, {"error": "missing or bad X-Hub-Signature-256"}
        event, delivery = headers.get("x-github-event", ""), headers.get("x-github-delivery", "")
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return 400, {"error": "the body is not JSON"}
        if event == "ping":
            return 200, {"status": "pong"}
        try:
            target = issue_target(event, payload, self.actions)
        except EventError:
            return 400, {"error": "no issue number or repository.full_name (OWNER/NAME) in the payload"}
        if isinstance(target, str):
            return 200, {"status": "ignored"}
        outcome = await asyncio.to_thread(self.queue.enqueue, delivery, target.repo, target.number)
        self.metrics.deliveries.labels(outcome).inc()
        if outcome == "full":
            return 503, {"error": f"the queue is full ({self.queue.max_queued} jobs): retry later"}
        if outcome == "duplicate":
            return 200, {"status": "duplicate delivery"}
        self._wake.set()
        return 202, {"status": outcome}


def retryable(error: Exception) -> tuple[bool, float | None]:
    """Whether a failed attempt may succeed later (GitHub 5xx, rate limits, timeouts, the network), and
    how long GitHub asked to wait (None: back off)."""
    if isinstance(error, GitHubError):
        if error.status is None or error.status >= 500 or error.retry_after is not None:
            return True, error.retry_after
        return False, None
    return isinstance(error, OSError), None  # TimeoutError and ConnectionError are OSErrors


async def _respond(send, status: int, body: dict[str, Any] | bytes, extra_headers: list[tuple[bytes, bytes]] = (),
                   content_type: str = "application/json") -> None:  # fmt: skip
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(data)).encode()), *extra_headers]})  # fmt: skip
    await send({"type": "http.response.body", "body": data})


def serve(app: WebhookApp, host: str = "127.0.0.1", port: int = 8000, max_connections: int = 256) -> None:
    """Runs the app under uvicorn; beyond `max_connections` open connections, requests get 503 (nothing of
    them is recorded, so a redelivery is accepted later), and idle keep-alive connections close after 5 s."""
    try:
        import uvicorn
    except ImportError:
        raise IssuelabError("`issuelab serve` needs the 'serve' extra: pip install 'issuelab[serve]'") from None
    configure_logging()
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on",
                limit_concurrency=max_connections, timeout_keep_alive=5)  # fmt: skip

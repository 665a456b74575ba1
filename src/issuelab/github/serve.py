"""`serve`: a GitHub webhook service (plain ASGI, run by uvicorn) for organisations.

    POST /webhook   verified with X-Hub-Signature-256 (HMAC-SHA256 of the raw body with
                    GITHUB_WEBHOOK_SECRET, compared in constant time) before anything is parsed;
                    `ping` answered; `issues.opened` (and the actions asked for) answered 202 at
                    once and labeled in the background; a redelivered X-GitHub-Delivery id is
                    answered 200 and ignored; bodies over the size limit get 413.
    GET  /healthz   status, model, deliveries queued / done / failed.

Logs are JSON lines on stderr: one per request and one per labeled issue, never a secret.
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
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..errors import IssuelabError
from .events import EventError, issue_target
from .labeling import GitHubLabeler

MAX_BODY_BYTES = 1 << 20  # GitHub caps payloads at 25 MB, but an issue event is a few kB
log = logging.getLogger("issuelab.serve")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)), "level": record.levelname.lower(),
                 "event": record.getMessage()}  # fmt: skip
        entry.update(getattr(record, "fields", {}))
        return json.dumps(entry, ensure_ascii=False)


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


class DeliveryLog:
    """Delivery ids seen recently (bounded), to ignore redeliveries."""

    def __init__(self, capacity: int = 100_000):
        self.capacity = capacity
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, delivery: str) -> bool:
        with self._lock:
            if delivery in self._seen:
                return False
            self._seen[delivery] = None
            if len(self._seen) > self.capacity:
                self._seen.popitem(last=False)
            return True

    def forget(self, delivery: str) -> None:  # a failed job may be redelivered by hand
        with self._lock:
            self._seen.pop(delivery, None)


class WebhookApp:
    def __init__(self, github_labeler: GitHubLabeler, secret: str, *, actions: tuple[str, ...] = ("opened",),
                 max_body: int = MAX_BODY_BYTES, workers: int = 8, model_name: str = ""):  # fmt: skip
        if not secret:
            raise ValueError("a webhook secret is required (GITHUB_WEBHOOK_SECRET)")
        self.github_labeler = github_labeler
        self._secret = secret.encode()
        self.actions = actions
        self.max_body = max_body
        self.model_name = model_name
        self.deliveries = DeliveryLog()
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="issuelab-label")
        self.counts = {"queued": 0, "done": 0, "failed": 0, "duplicates": 0}
        self._counts_lock = threading.Lock()

    def _count(self, key: str, delta: int = 1) -> None:
        with self._counts_lock:
            self.counts[key] += delta

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
        if path == "/healthz" and method in ("GET", "HEAD"):
            status, body = 200, dict(status="ok", model=self.model_name, **self.counts)
        elif path == "/webhook" and method == "POST":
            status, body = await self._webhook(headers, receive)
        elif path in ("/healthz", "/webhook"):
            status, body = 405, {"error": "method not allowed"}
        else:
            status, body = 404, {"error": "not found"}
        await _respond(send, status, body)
        log.info("request", extra={"fields": {
            "method": method, "path": path, "status": status, "ms": round((time.perf_counter() - started) * 1000, 2),
            "delivery": headers.get("x-github-delivery", ""), "github_event": headers.get("x-github-event", ""),
        }})  # fmt: skip

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.get_running_loop().run_in_executor(None, self.executor.shutdown, True)  # finish queued work
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _webhook(self, headers: dict[str, str], receive) -> tuple[int, dict[str, Any]]:
        try:
            declared = int(headers.get("content-length", "0") or 0)
        except ValueError:
            return 400, {"error": "bad Content-Length"}
        if declared > self.max_body:
            return 413, {"error": f"body over {self.max_body} bytes"}
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return 400, {"error": "client disconnected"}
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return 413, {"error": f"body over {self.max_body} bytes"}
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
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
            return 400, {"error": "no issue number or repository.full_name in the payload"}
        if isinstance(target, str):
            return 200, {"status": "ignored"}
        if delivery and not self.deliveries.first_time(delivery):
            self._count("duplicates")
            return 200, {"status": "duplicate delivery"}
        self._count("queued")
        self.executor.submit(self._label, target.repo, target.number, delivery)
        return 202, {"status": "queued"}

    def _label(self, repo: str, number: int, delivery: str) -> None:
        started = time.perf_counter()
        fields = {"delivery": delivery, "repo": repo, "issue": number}
        try:
            decision = self.github_labeler.label_issue(repo, number)
        except Exception as e:  # a failed job must not kill the worker; it is logged and counted
            self.deliveries.forget(delivery)
            self._count("failed")
            log.error("label failed", extra={"fields": dict(fields, error=f"{type(e).__name__}: {e}")})
            return
        finally:
            self._count("queued", -1)
        self._count("done")
        log.info("labeled" if decision.action == "label" else decision.action, extra={"fields": dict(
            fields, labels=decision.labels, reason=decision.reason, dry_run=decision.dry_run,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )})  # fmt: skip


async def _respond(send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": data})


def serve(app: WebhookApp, host: str = "127.0.0.1", port: int = 8000) -> None:
    try:
        import uvicorn
    except ImportError:
        raise IssuelabError("`issuelab serve` needs the 'serve' extra: pip install 'issuelab[serve]'") from None
    configure_logging()
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on")

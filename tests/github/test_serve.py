"""`issuelab serve`: the webhook service under uvicorn, over real HTTP, against a fake GitHub."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import socket
import threading
import time

import pytest
import uvicorn  # the 'serve' extra is part of the test install

from issuelab.github.client import GitHubClient
from issuelab.github.labeling import GitHubLabeler
from issuelab.github.serve import WebhookApp, signature_ok
from issuelab.labeler import Labeler

from ..helpers.fake_github import FakeGitHub, make_issue

REPO = "acme/widgets"
SECRET = "webhook-secret-for-tests"
TOKEN = "ghs_serve_token"


class Service:
    """The app under uvicorn on a free loopback port, in a thread."""

    def __init__(self, app: WebhookApp):
        self.app = app
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> Service:
        self.thread.start()
        deadline = time.time() + 10
        while not self.server.started and time.time() < deadline:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def post(self, body: bytes, event: str = "issues", delivery: str = "d-1", signature: str | None = "sign",
             extra: dict | None = None) -> tuple[int, dict]:  # fmt: skip
        headers = {"Content-Type": "application/json", "X-GitHub-Event": event, "X-GitHub-Delivery": delivery}
        if signature == "sign":
            signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        if signature is not None:
            headers["X-Hub-Signature-256"] = signature
        headers.update(extra or {})
        return self.request("POST", "/webhook", body, headers)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        status, data = response.status, response.read()
        conn.close()
        return status, json.loads(data or b"{}")

    def wait_idle(self, timeout: float = 10) -> None:
        deadline = time.time() + timeout
        while self.app.counts["queued"] and time.time() < deadline:
            time.sleep(0.01)


def payload(number: int, action: str = "opened") -> bytes:
    return json.dumps({"action": action, "issue": {"number": number}, "repository": {"full_name": REPO}}).encode()


@pytest.fixture
def service(run_dir):
    with FakeGitHub(token=TOKEN) as fake:
        for k in range(1, 4):
            fake.add_issue(REPO, make_issue(k, "crash with a traceback", "it fails with an exception"))
        client = GitHubClient(fake.url, TOKEN, backoff=0.01, log=lambda m: None)
        app = WebhookApp(GitHubLabeler(Labeler.load(run_dir), client), SECRET, max_body=4096, model_name="toy")
        with Service(app) as svc:
            svc.fake = fake
            yield svc


def test_signature_check_is_exact():
    body = b'{"a": 1}'
    good = "sha256=" + hmac.new(b"s", body, hashlib.sha256).hexdigest()
    assert signature_ok(b"s", body, good)
    assert not signature_ok(b"s", body + b" ", good)
    assert not signature_ok(b"s", body, good.replace("sha256=", "sha1="))
    assert not signature_ok(b"s", body, None)


def test_opened_issue_is_labeled_in_the_background(service):
    status, body = service.post(payload(1))
    assert (status, body) == (202, {"status": "queued"})
    service.wait_idle()
    assert service.fake.posts_for(REPO, 1) and "bug" in service.fake.issue_labels(REPO, 1)
    status, health = service.request("GET", "/healthz")
    assert status == 200 and health["status"] == "ok" and health["done"] == 1 and health["model"] == "toy"


def test_bad_or_missing_signatures_are_rejected_before_parsing(service):
    assert service.post(payload(1), signature=None)[0] == 401
    assert service.post(payload(1), signature="sha256=" + "0" * 64)[0] == 401
    assert service.post(b"not json at all", signature="sha256=deadbeef")[0] == 401  # never parsed
    assert service.post(b"not json at all")[0] == 400  # signed garbage: parsed, rejected
    time.sleep(0.2)
    assert service.fake.label_posts == [] and service.app.counts["queued"] == 0


def test_redelivery_is_ignored(service):
    assert service.post(payload(2), delivery="same")[0] == 202
    assert service.post(payload(2), delivery="same") == (200, {"status": "duplicate delivery"})
    service.wait_idle()
    assert len(service.fake.posts_for(REPO, 2)) == 1 and service.app.counts["duplicates"] == 1


def test_a_payload_naming_no_repository_is_rejected_before_any_request(service):
    body = json.dumps({"action": "opened", "issue": {"number": 1}, "repository": {"full_name": "../.."}}).encode()
    assert service.post(body, delivery="traversal") == (400, {"error": "no issue number or repository.full_name in the payload"})
    assert service.app.counts["queued"] == 0 and service.fake.label_posts == []


def test_ping_other_events_and_routes(service):
    assert service.post(b'{"zen": "Keep it logically awesome."}', event="ping") == (200, {"status": "pong"})
    assert service.post(payload(1, "closed"), delivery="d-2") == (200, {"status": "ignored"})
    assert service.post(b"{}", event="push", delivery="d-3") == (200, {"status": "ignored"})
    assert service.request("GET", "/webhook")[0] == 405
    assert service.request("GET", "/nope")[0] == 404


def test_oversize_bodies_are_rejected(service):
    big = json.dumps({"action": "opened", "pad": "x" * 5000}).encode()
    assert service.post(big)[0] == 413
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)  # a lying Content-Length, chunked body
    conn.putrequest("POST", "/webhook")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    for _ in range(3):
        conn.send(b"800\r\n" + b"x" * 0x800 + b"\r\n")
    conn.send(b"0\r\n\r\n")
    assert conn.getresponse().status == 413


def test_a_failed_job_is_logged_and_can_be_redelivered(service):
    service.fake.fail(status=404, path_contains="/issues/3")
    assert service.post(payload(3), delivery="retry-me")[0] == 202
    service.wait_idle()
    assert service.app.counts["failed"] == 1
    assert service.post(payload(3), delivery="retry-me")[0] == 202  # forgotten after the failure: accepted again
    service.wait_idle()
    assert len(service.fake.posts_for(REPO, 3)) == 1


def test_serve_refuses_to_start_without_a_secret(cli, run_dir, monkeypatch):
    monkeypatch.delenv("GITHUB_WEBHOOK_SECRET", raising=False)
    code, _, err = cli("serve", "--model", run_dir)
    assert code == 2 and "GITHUB_WEBHOOK_SECRET" in err


def test_logs_are_json_lines_without_secrets(service, caplog):
    import logging

    from issuelab.github.serve import JsonFormatter

    with caplog.at_level(logging.INFO, logger="issuelab.serve"):
        assert service.post(payload(1), delivery="logged")[0] == 202
        service.wait_idle()
    lines = [json.loads(JsonFormatter().format(record)) for record in caplog.records]
    labeled = [line for line in lines if line["event"] == "labeled"]
    assert labeled and labeled[0]["issue"] == 1 and labeled[0]["delivery"] == "logged" and "bug" in labeled[0]["labels"]
    assert any(line["event"] == "request" and line["status"] == 202 for line in lines)
    assert not any(SECRET in text or TOKEN in text for text in map(json.dumps, lines))

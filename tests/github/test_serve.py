"""`issuelab serve`: the webhook service under uvicorn, over real HTTP, against a fake GitHub."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import socket
import sqlite3
import threading
import time

import pytest
import uvicorn  # the 'serve' extra is part of the test install

from issuelab.github.client import GitHubClient
from issuelab.github.labeling import GitHubLabeler
from issuelab.github.queue import JobQueue
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
        while time.time() < deadline:
            counts = self.app.queue.counts()
            if not counts["queued"] and not counts["running"]:
                return
            time.sleep(0.01)


def payload(number: int, action: str = "opened") -> bytes:
    return json.dumps({"action": action, "issue": {"number": number}, "repository": {"full_name": REPO}}).encode()


def make_app(run_dir, fake: FakeGitHub, state, **options) -> WebhookApp:
    client = GitHubClient(fake.url, TOKEN, backoff=0.01, max_retries=1, log=lambda m: None)
    queue = JobQueue(state, backoff=options.pop("backoff", 0.01), max_queued=options.pop("max_queued", 10_000),
                     keep_deliveries=options.pop("keep_deliveries", 200_000))  # fmt: skip
    return WebhookApp(GitHubLabeler(Labeler.load(run_dir), client), SECRET, queue, max_body=4096, model_name="toy", **options)


@pytest.fixture
def service(run_dir, tmp_path):
    with FakeGitHub(token=TOKEN) as fake:
        for k in range(1, 4):
            fake.add_issue(REPO, make_issue(k, "crash with a traceback", "it fails with an exception"))
        with Service(make_app(run_dir, fake, tmp_path / "state.sqlite3")) as svc:
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
    assert service.fake.label_posts == [] and service.app.queue.counts()["done"] == 0


def test_redelivery_is_ignored(service):
    assert service.post(payload(2), delivery="same")[0] == 202
    assert service.post(payload(2), delivery="same") == (200, {"status": "duplicate delivery"})
    service.wait_idle()
    assert len(service.fake.posts_for(REPO, 2)) == 1 and service.app.counts["duplicates"] == 1


def test_a_payload_naming_no_repository_or_a_bad_number_is_rejected_before_any_request(service):
    error = {"error": "no issue number or repository.full_name (OWNER/NAME) in the payload"}
    for repo, number in (("../..", 1), ("acme/..", 1), ("acme", 1), (REPO, 0), (REPO, -3), (REPO, "1"), (REPO, True)):
        body = json.dumps({"action": "opened", "issue": {"number": number}, "repository": {"full_name": repo}}).encode()
        assert service.post(body, delivery=f"bad-{repo}-{number}") == (400, error), (repo, number)
    assert sum(service.app.queue.counts().values()) == 0 and service.fake.requests == []


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


def test_a_job_github_refuses_fails_with_its_reason_and_can_be_replayed(service):
    service.fake.fail(status=404, path_contains="/issues/3")
    assert service.post(payload(3), delivery="retry-me")[0] == 202
    service.wait_idle()
    [failure] = service.app.queue.failures()
    assert failure["number"] == 3 and "HTTP 404" in failure["error"] and failure["attempts"] == 1
    assert service.post(payload(3), delivery="retry-me")[0] == 200  # the same delivery: still known
    assert service.app.queue.replay_failed() == 1
    service.app._wake.set()
    service.wait_idle()
    assert len(service.fake.posts_for(REPO, 3)) == 1 and service.app.queue.counts()["failed"] == 0


def test_github_errors_are_retried_with_backoff_until_it_recovers(service):
    service.fake.fail(status=502, path_contains="/issues/2", times=6)  # the client tries twice per attempt
    assert service.post(payload(2), delivery="flaky")[0] == 202
    deadline = time.time() + 10
    while not service.fake.posts_for(REPO, 2) and time.time() < deadline:
        time.sleep(0.02)
    service.wait_idle()
    assert len(service.fake.posts_for(REPO, 2)) == 1 and service.app.counts["retries"] >= 2
    assert service.app.queue.counts()["done"] == 1


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


def test_accepted_deliveries_survive_a_crash_and_are_labeled_once_after_the_restart(run_dir, tmp_path):
    """The service dies (no shutdown: workers never ran) after answering 202; the next one labels them all,
    and a redelivery of an accepted id after the restart is recognised."""
    state = tmp_path / "state.sqlite3"
    with FakeGitHub(token=TOKEN) as fake:
        for k in range(1, 6):
            fake.add_issue(REPO, make_issue(k, "crash with a traceback", "it fails with an exception"))
        crashed = make_app(run_dir, fake, state, workers=0)
        with Service(crashed) as svc:
            for k in range(1, 6):
                assert svc.post(payload(k), delivery=f"d{k}")[0] == 202
            job = crashed.queue.claim()  # one job was in progress when it died
            assert job is not None and crashed.queue.counts()["running"] == 1
        assert fake.label_posts == []
        restarted = make_app(run_dir, fake, state)
        assert restarted.queue.reclaimed == 1
        with Service(restarted) as svc:
            svc.wait_idle()
            assert svc.post(payload(1), delivery="d1") == (200, {"status": "duplicate delivery"})
        assert all(len(fake.posts_for(REPO, k)) == 1 for k in range(1, 6))
        assert restarted.queue.counts()["done"] == 5


def test_a_full_queue_answers_503_with_retry_after_and_records_nothing(run_dir, tmp_path):
    with FakeGitHub(token=TOKEN) as fake:
        fake.add_issue(REPO, make_issue(1, "crash", "traceback"))
        app = make_app(run_dir, fake, tmp_path / "state.sqlite3", workers=0, max_queued=2)
        with Service(app) as svc:
            assert svc.post(payload(1), delivery="a")[0] == 202
            assert svc.post(payload(2), delivery="b")[0] == 202
            conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=10)
            body = payload(3)
            signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            conn.request("POST", "/webhook", body, {"X-GitHub-Event": "issues", "X-GitHub-Delivery": "c", "X-Hub-Signature-256": signature})
            response = conn.getresponse()
            assert response.status == 503 and response.getheader("Retry-After") == "60"
            response.read()
            assert app.counts["refused_full"] == 1
            assert svc.post(payload(1), delivery="a2") == (202, {"status": "coalesced"})  # issue 1 already waits: no new job
            app.queue.claim()  # room again once a job is done
            app.queue.done(app.queue.claim())
            assert svc.post(payload(3), delivery="c")[0] == 202  # the refused delivery was not recorded


def test_a_client_that_stops_sending_its_body_gets_408(run_dir, tmp_path):
    with FakeGitHub(token=TOKEN) as fake:
        with Service(make_app(run_dir, fake, tmp_path / "state.sqlite3", read_timeout=0.3)) as svc:
            sock = socket.create_connection(("127.0.0.1", svc.port), timeout=5)
            sock.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"{" * 10)
            started = time.time()
            answer = sock.recv(4096)
            sock.close()
            assert answer.startswith(b"HTTP/1.1 408") and time.time() - started < 3


def test_metrics_are_prometheus_text(service):
    assert service.post(payload(1), delivery="m1")[0] == 202
    assert service.post(payload(1), delivery="m1")[0] == 200
    service.wait_idle()
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)
    conn.request("GET", "/metrics")
    response = conn.getresponse()
    text = response.read().decode()
    assert response.status == 200 and response.getheader("Content-Type").startswith("text/plain")
    assert 'issuelab_deliveries_total{outcome="queued"} 1.0' in text and 'issuelab_deliveries_total{outcome="duplicate"} 1.0' in text
    assert 'issuelab_jobs_finished_total{result="label"} 1.0' in text and 'issuelab_jobs{state="queued"} 0.0' in text
    assert "issuelab_job_seconds_count 1.0" in text


def test_the_state_file_forgets_old_delivery_ids_while_the_service_runs(run_dir, tmp_path):
    state = tmp_path / "state.sqlite3"
    with FakeGitHub(token=TOKEN) as fake:
        for k in range(1, 6):
            fake.add_issue(REPO, make_issue(k, "crash with a traceback", "it fails with an exception"))
        with Service(make_app(run_dir, fake, state, keep_deliveries=2, prune_every=0.05)) as svc:
            for k in range(1, 6):
                assert svc.post(payload(k), delivery=f"d{k}")[0] == 202
                time.sleep(0.01)
            svc.wait_idle()
            time.sleep(0.3)  # a few pruning rounds
            with sqlite3.connect(state) as db:
                kept = [row[0] for row in db.execute("SELECT id FROM deliveries ORDER BY received")]
    assert kept == ["d4", "d5"]
    assert sorted(number for _, number, _ in fake.label_posts) == [1, 2, 3, 4, 5]


def test_the_service_in_suggest_mode_keeps_one_comment_through_a_failed_request_and_a_second_delivery(run_dir, tmp_path):
    from issuelab.policy import PolicyConfig

    with FakeGitHub(token=TOKEN) as fake:
        fake.add_issue(REPO, make_issue(1, "crash with a traceback", "it fails with an exception"))
        fault = fake.fail(status=502, method="POST", path_contains="/comments")  # the first comment POST fails: the job is retried
        app = make_app(run_dir, fake, tmp_path / "state.sqlite3")
        app.github_labeler = GitHubLabeler(Labeler.load(run_dir), app.github_labeler.client,
                                           PolicyConfig(suggest=True, suggest_scale=0.01, skip_labeled=False))  # fmt: skip
        with Service(app) as svc:
            assert svc.post(payload(1), delivery="d-1")[0] == 202
            svc.wait_idle()
            assert svc.post(payload(1), delivery="d-2")[0] == 202  # a second delivery for the same issue, later
            svc.wait_idle()
        assert len(fake.comments[(REPO, 1)]) == 1 and "bug" in fake.issue_labels(REPO, 1)
        assert [method for method, _, _ in fake.comment_writes].count("POST") == 1 and fault.seen >= 1 and fault.times == 0

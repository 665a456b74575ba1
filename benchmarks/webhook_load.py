"""The webhook service under load: `issuelab serve` (a tfidf run trained on NLBSE'24 facebook/react)
in its own process, deliveries sent from this process over loopback by N concurrent keep-alive
connections, GitHub played by the local fake server of the tests (real HTTP, in this process).

Measured: deliveries per second answered, latency from sending a delivery to its 2xx (p50/p95/p99),
the time until every issue is labeled, and the counts that must hold: each issue labeled by exactly
one POST, redeliveries (the same X-GitHub-Delivery id sent again) answered and ignored, nothing lost.
Baseline in the same run: the in-process time to label one issue (prediction, policy and the three
API calls), which a handler that labeled before answering would add to every delivery.

    python benchmarks/webhook_load.py --json docs/results/webhook-load.json
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import NLBSE_CONFIG, ROOT, machine, nlbse_data_dir, percentile, write_report
from issuelab.config import load_config
from issuelab.importers import import_issues
from issuelab.train import train_run

sys.path.insert(0, str(ROOT))
from tests.helpers.fake_github import FakeGitHub, make_issue  # noqa: E402

REPO = "acme/widgets"
SECRET = "load-test-secret"
TOKEN = "ghs_load_test_token"


def react_task(data: Path):
    """The config and training issues of the run the service answers with (NLBSE'24 facebook/react), and
    the fake GitHub's issue for any number (a real react test issue's text)."""
    config = load_config(NLBSE_CONFIG)
    train, _ = import_issues(data / "issues_train.csv", config.label_names, repos=["facebook/react"])
    texts, _ = import_issues(data / "issues_test.csv", config.label_names, repos=["facebook/react"])

    def github_issue(number: int) -> dict:
        source = texts[number % len(texts)]
        return make_issue(number, source.title, source.body, user=f"user{number}")

    return config, train, github_issue


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(port: int, path: str) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def send_all(port: int, deliveries: list[tuple[str, bytes]], concurrency: int, on_answer=None) -> tuple[list[float], dict[int, int]]:
    """Sends every delivery; returns latencies (s) and a count per status (0: no answer). `on_answer(delivery,
    status)` is called after each."""
    work: queue.Queue = queue.Queue()
    for item in deliveries:
        work.put(item)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def sender() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:
            try:
                delivery, body = work.get_nowait()
            except queue.Empty:
                break
            signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            headers = {"Content-Type": "application/json", "X-GitHub-Event": "issues", "X-GitHub-Delivery": delivery,
                       "X-Hub-Signature-256": signature}  # fmt: skip
            started = time.perf_counter()
            try:
                conn.request("POST", "/webhook", body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                status = 0
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                statuses[status] = statuses.get(status, 0) + 1
                if on_answer:
                    on_answer(delivery, status)
        conn.close()

    threads = [threading.Thread(target=sender) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, statuses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=nlbse_data_dir())
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--redeliveries", type=int, default=200, help="deliveries sent a second time")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--workers", type=int, default=8, help="labeling threads of the service")
    parser.add_argument("--fail-every", type=int, default=0, help="GitHub answers 502 to every n-th API call (0: never)")
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()

    config, train, github_issue = react_task(Path(args.data))

    report: dict = {"machine": machine(), "deliveries": args.deliveries, "redeliveries": args.redeliveries,
                    "concurrency": args.concurrency, "workers": args.workers, "fail_every": args.fail_every}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp, FakeGitHub(token=TOKEN, auto_issue=github_issue) as fake:
        run_dir = Path(tmp) / "run"
        labeler, _ = train_run(config, train, None, run_dir, engine="tfidf")

        # Baseline: labeling one issue in-process (predict + policy + the three API calls).
        from issuelab.github.client import GitHubClient
        from issuelab.github.labeling import GitHubLabeler

        inline = GitHubLabeler(labeler, GitHubClient(fake.url, TOKEN))
        numbers = range(100_001, 100_101)
        started = time.perf_counter()
        for n in numbers:
            inline.label_issue(REPO, n)
        report["inline_label_ms"] = round((time.perf_counter() - started) / len(numbers) * 1000, 2)
        fake.label_posts.clear()
        if args.fail_every:
            fake.fail(status=502, every=args.fail_every)

        port = free_port()
        env = dict(os.environ, GITHUB_WEBHOOK_SECRET=SECRET, GITHUB_TOKEN=TOKEN)
        command = [sys.executable, "-m", "issuelab", "serve", "--model", str(run_dir), "--port", str(port),
                   "--api-url", fake.url, "--workers", str(args.workers), "--state", str(Path(tmp) / "state.sqlite3")]  # fmt: skip
        log_path = Path(tmp) / "serve.log"
        with open(log_path, "w") as log:
            service = subprocess.Popen(command, stdout=log, stderr=log, env=env)
        try:
            deadline = time.time() + 60
            while True:
                try:
                    if get_json(port, "/healthz")["status"] == "ok":
                        break
                except OSError:
                    if time.time() > deadline or service.poll() is not None:
                        raise SystemExit(f"the service did not start:\n{log_path.read_text()}") from None
                    time.sleep(0.1)

            def body(number: int) -> bytes:
                return json.dumps({"action": "opened", "issue": {"number": number, "title": "..."},
                                   "repository": {"full_name": REPO}}).encode()  # fmt: skip

            deliveries = [(f"delivery-{n}", body(n)) for n in range(1, args.deliveries + 1)]
            deliveries += deliveries[: args.redeliveries]  # the same ids again, after the first sends
            started = time.perf_counter()
            latencies, statuses = send_all(port, deliveries, args.concurrency)
            sent_seconds = time.perf_counter() - started
            while (lambda h: h["queued"] + h["running"])(get_json(port, "/healthz")) > 0:
                time.sleep(0.05)
            drained_seconds = time.perf_counter() - started
            health = get_json(port, "/healthz")
        finally:
            service.terminate()
            service.wait(10)

        posts: dict[int, int] = {}
        for _repo, number, _labels in fake.label_posts:
            posts[number] = posts.get(number, 0) + 1
        final_duplicates = sum(
            len(labels) != len(set(labels)) for labels in (fake.issue_labels(REPO, n) for n in range(1, args.deliveries + 1))
        )  # fmt: skip
        log_lines = log_path.read_text().splitlines()

    report.update(
        sent_seconds=round(sent_seconds, 2),
        deliveries_per_second=round(len(deliveries) / sent_seconds, 1),
        latency_ms={q: round(percentile(latencies, v) * 1000, 2) for q, v in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))},
        all_labeled_seconds=round(drained_seconds, 2),
        issues_labeled_per_second=round(args.deliveries / drained_seconds, 1),
        statuses={str(k): v for k, v in sorted(statuses.items())},
        issues_with_one_post=sum(1 for n in range(1, args.deliveries + 1) if posts.get(n) == 1),
        issues_with_several_posts=sum(1 for c in posts.values() if c > 1),
        issues_lost=sum(1 for n in range(1, args.deliveries + 1) if n not in posts),
        duplicate_labels_on_an_issue=final_duplicates,
        service_counts={k: health[k] for k in ("done", "failed", "duplicates", "queued")},
        github_calls=len(fake.requests),
        log_lines=len(log_lines),
        token_in_log=any(TOKEN in line or SECRET in line for line in log_lines),
    )
    report["baseline_sync_seconds"] = round(report["inline_label_ms"] / 1000 * args.deliveries / args.workers, 2)

    print(f"{'WEBHOOK SERVICE UNDER LOAD (tfidf)':<48} {'VALUE':>12}")
    print(f"{'-' * 48} {'-' * 12}")
    rows = [
        ("deliveries sent (new + redelivered)", f"{args.deliveries} + {args.redeliveries}"),
        ("concurrent connections / labeling threads", f"{args.concurrency} / {args.workers}"),
        ("GitHub answers 502 to every n-th call", str(args.fail_every or "never")),
        ("deliveries answered per second", f"{report['deliveries_per_second']:.0f}/s"),
        ("latency to 2xx p50 / p95 / p99", "{p50:.1f} / {p95:.1f} / {p99:.1f} ms".format(**report["latency_ms"])),
        ("all issues labeled after", f"{report['all_labeled_seconds']:.2f} s"),
        ("issues labeled per second", f"{report['issues_labeled_per_second']:.0f}/s"),
        ("baseline: label one issue in-process", f"{report['inline_label_ms']:.1f} ms"),
        ("HTTP statuses", ", ".join(f"{k}: {v}" for k, v in report["statuses"].items())),
        ("issues labeled by exactly one POST", f"{report['issues_with_one_post']} of {args.deliveries}"),
        ("issues with several POSTs / lost", f"{report['issues_with_several_posts']} / {report['issues_lost']}"),
        ("redeliveries ignored", str(report["service_counts"]["duplicates"])),
        ("GitHub API calls (3 per issue + retries)", str(report["github_calls"])),
        ("secret or token in the service log", "yes" if report["token_in_log"] else "no"),
    ]
    for name, value in rows:
        print(f"{name:<48} {value:>12}")
    write_report(args.json, report)
    ok = report["issues_with_one_post"] == args.deliveries and not report["issues_lost"] and not report["token_in_log"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

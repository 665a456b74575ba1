"""The webhook service when things go wrong: `issuelab serve` (a tfidf run on NLBSE'24 facebook/react) in
its own process, GitHub played by the local fake server of the tests, deliveries sent as GitHub sends
them (a delivery that got no 2xx is sent again, with the same X-GitHub-Delivery id).

Scenarios, each counting the issues labeled once, never, and more than once (by label POSTs):
- kill -9: a burst of N deliveries; after k of them are answered the service is killed with SIGKILL, a new
  one starts on the same state file, and the deliveries that got no 2xx are sent again (k at several points);
- GitHub down: GitHub answers 502 to everything for D seconds while deliveries arrive; every accepted issue
  must be labeled once it recovers;
- SIGTERM while GitHub is down with jobs queued: how long the service takes to exit, and that the next
  start labels what was left;
- flood: 60,000 deliveries of distinct issues against a slow GitHub (every answer delayed) and a bounded
  queue: the service's resident memory as the deliveries arrive, how many were refused with 503, and that
  every accepted one is labeled once.

    python benchmarks/webhook_crash.py --json docs/results/webhook-crash.json
    python benchmarks/webhook_crash.py --kill-points 50 150 --down-seconds 20   # quicker
    python benchmarks/webhook_crash.py --scenarios flood --flood 60000 --json flood.json
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import ROOT, machine, nlbse_data_dir, write_report
from issuelab.train import train_run
from webhook_load import REPO, SECRET, TOKEN, free_port, get_json, react_task, send_all

sys.path.insert(0, str(ROOT))
from tests.helpers.fake_github import FakeGitHub  # noqa: E402


class Service:
    """`issuelab serve` in a subprocess on a given state file."""

    def __init__(self, run_dir: Path, state: Path, api_url: str, log: Path, workers: int = 8, extra: tuple[str, ...] = ()):
        self.port = free_port()
        env = dict(os.environ, GITHUB_WEBHOOK_SECRET=SECRET, GITHUB_TOKEN=TOKEN)
        command = [sys.executable, "-m", "issuelab", "serve", "--model", str(run_dir), "--port", str(self.port),
                   "--api-url", api_url, "--workers", str(workers), "--state", str(state), *extra]  # fmt: skip
        with open(log, "a") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=out, env=env)
        deadline = time.time() + 60
        while True:
            try:
                if get_json(self.port, "/healthz")["status"] == "ok":
                    return
            except OSError:
                if time.time() > deadline or self.process.poll() is not None:
                    raise SystemExit(f"the service did not start:\n{log.read_text()}") from None
                time.sleep(0.05)

    def rss_mb(self) -> float:
        """The service's resident memory (Linux /proc)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def health(self) -> dict:
        return get_json(self.port, "/healthz")

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.time() + timeout
        while time.time() < deadline:
            health = self.health()
            if health["queued"] == 0 and health["running"] == 0:
                return True
            time.sleep(0.1)
        return False

    def kill(self, sig: int = signal.SIGKILL) -> float:
        started = time.perf_counter()
        self.process.send_signal(sig)
        self.process.wait(120)
        return time.perf_counter() - started


def body(number: int) -> bytes:
    import json

    return json.dumps({"action": "opened", "issue": {"number": number}, "repository": {"full_name": REPO}}).encode()


def outcome(fake: FakeGitHub, numbers: range) -> dict:
    posts: dict[int, int] = {}
    for _repo, number, _labels in fake.label_posts:
        posts[number] = posts.get(number, 0) + 1
    return {"labeled_once": sum(posts.get(n) == 1 for n in numbers), "never": sum(n not in posts for n in numbers),
            "twice_or_more": sum(posts.get(n, 0) > 1 for n in numbers)}  # fmt: skip


def kill_scenario(run_dir, fake, tmp: Path, burst: int, kill_after: int, concurrency: int) -> dict:
    """Sends the burst; once `kill_after` deliveries are answered, SIGKILL; restart; resend what got no 2xx."""
    fake.label_posts.clear()
    base = kill_after * 1_000_000  # fresh issue numbers per scenario
    numbers = range(base + 1, base + burst + 1)
    deliveries = [(f"kill{kill_after}-{n}", body(n)) for n in numbers]
    state, log = tmp / f"kill-{kill_after}.sqlite3", tmp / "serve.log"
    service = Service(run_dir, state, fake.url, log)
    answered: dict[str, int] = {}

    def on_answer(delivery: str, status: int) -> None:
        answered[delivery] = status
        if len(answered) == kill_after:
            service.kill()

    send_all(service.port, deliveries, concurrency, on_answer=on_answer)
    accepted_before = sum(200 <= s < 300 for s in answered.values())
    service = Service(run_dir, state, fake.url, log)
    resend = [(d, b) for d, b in deliveries if not 200 <= answered.get(d, 0) < 300]
    _, statuses = send_all(service.port, resend, concurrency)
    service.wait_idle(120)
    service.kill(signal.SIGTERM)
    return {"kill_after": kill_after, "accepted_before_kill": accepted_before, "resent": len(resend),
            "resent_statuses": {str(k): v for k, v in sorted(statuses.items())}, **outcome(fake, numbers)}  # fmt: skip


def down_scenario(run_dir, fake, tmp: Path, deliveries: int, down_seconds: float) -> dict:
    fake.label_posts.clear()
    numbers = range(900_000_001, 900_000_001 + deliveries)
    service = Service(run_dir, tmp / "down.sqlite3", fake.url, tmp / "serve.log")
    fault = fake.fail(status=502, times=10**9)
    down_at = time.time()
    pace = down_seconds / 3 / deliveries  # the deliveries arrive over the first third of the outage
    statuses: dict[int, int] = {}
    for n in numbers:
        _, got = send_all(service.port, [(f"down-{n}", body(n))], 1)
        for k, v in got.items():
            statuses[k] = statuses.get(k, 0) + v
        time.sleep(pace)
    time.sleep(max(0.0, down_at + down_seconds - time.time()))
    fake.faults.remove(fault)
    recovered = time.time()
    drained = service.wait_idle(600)
    all_labeled_after = time.time() - recovered
    health = service.health()
    service.kill(signal.SIGTERM)
    return {"deliveries": deliveries, "down_seconds": down_seconds, "statuses": {str(k): v for k, v in statuses.items()},
            "drained": drained, "all_labeled_seconds_after_recovery": round(all_labeled_after, 1),
            "retries": health["retries"], "failed": health["failed"], **outcome(fake, numbers)}  # fmt: skip


def sigterm_scenario(run_dir, fake, tmp: Path, queued: int) -> dict:
    fake.label_posts.clear()
    numbers = range(800_000_001, 800_000_001 + queued)
    state, log = tmp / "sigterm.sqlite3", tmp / "serve.log"
    service = Service(run_dir, state, fake.url, log)
    fault = fake.fail(status=502, times=10**9)
    send_all(service.port, [(f"term-{n}", body(n)) for n in numbers], 4)
    time.sleep(2)
    exit_seconds = service.kill(signal.SIGTERM)
    fake.faults.remove(fault)
    service = Service(run_dir, state, fake.url, log)
    service.wait_idle(300)
    service.kill(signal.SIGTERM)
    return {"queued": queued, "exit_seconds": round(exit_seconds, 2), **outcome(fake, numbers)}


def flood_scenario(run_dir, fake, tmp: Path, deliveries: int, max_queue: int, latency: float, concurrency: int) -> dict:
    """Deliveries of distinct issues as fast as the service answers, GitHub answering every call after
    `latency` s: memory is sampled every second; the queue fills and the service answers 503."""
    fake.label_posts.clear()
    fake.latency = latency
    numbers = range(700_000_001, 700_000_001 + deliveries)
    state = tmp / "flood.sqlite3"
    service = Service(run_dir, state, fake.url, tmp / "serve.log", extra=("--max-queue", str(max_queue)))
    accepted: set[int] = set()
    samples: list[tuple[int, float]] = [(0, service.rss_mb())]
    answered = [0]
    done = threading.Event()

    def on_answer(delivery: str, status: int) -> None:
        answered[0] += 1
        if 200 <= status < 300:
            accepted.add(int(delivery.split("-")[1]))

    def sample() -> None:
        while not done.wait(1.0):
            samples.append((answered[0], service.rss_mb()))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    _, statuses = send_all(service.port, [(f"flood-{n}", body(n)) for n in numbers], concurrency, on_answer=on_answer)
    sent_seconds = time.perf_counter() - started
    drained = service.wait_idle(1800)
    done.set()
    sampler.join()
    samples.append((answered[0], service.rss_mb()))
    fake.latency = 0.0
    service.kill(signal.SIGTERM)
    labeled = outcome(fake, numbers)
    posts = {number for _repo, number, _labels in fake.label_posts}
    tenth = max(1, deliveries // 10)
    by_tenth = {}
    for count, rss in samples:  # the last sample in each tenth of the deliveries answered
        by_tenth[min(10, count // tenth)] = rss
    return {"deliveries": deliveries, "max_queue": max_queue, "github_latency_s": latency, "sent_seconds": round(sent_seconds, 1),
            "statuses": {str(k): v for k, v in sorted(statuses.items())}, "drained": drained,
            "accepted": len(accepted), "accepted_never_labeled": len(accepted - posts),
            "labeled_twice_or_more": labeled["twice_or_more"], "rss_mb_at_start": round(samples[0][1], 1),
            "rss_mb_peak": round(max(rss for _, rss in samples), 1), "rss_mb_end": round(samples[-1][1], 1),
            "rss_mb_by_tenth": {str(k * 10) + "%": round(v, 1) for k, v in sorted(by_tenth.items())},
            "state_file_mb": round(sum(p.stat().st_size for p in tmp.glob("flood.sqlite3*")) / 2**20, 1)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=nlbse_data_dir())
    parser.add_argument("--burst", type=int, default=300)
    parser.add_argument("--kill-points", type=int, nargs="+", default=[30, 90, 150, 210, 270])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--down-seconds", type=float, default=75.0)
    parser.add_argument("--down-deliveries", type=int, default=24)
    parser.add_argument("--sigterm-queued", type=int, default=16)
    parser.add_argument("--flood", type=int, default=60_000, help="deliveries of the flood scenario")
    parser.add_argument("--flood-max-queue", type=int, default=2_000, help="the service's --max-queue in the flood")
    parser.add_argument("--github-latency", type=float, default=0.05, help="seconds each GitHub answer takes in the flood")
    parser.add_argument("--scenarios", nargs="+", choices=["kill", "down", "sigterm", "flood"], default=["kill", "down", "sigterm", "flood"])
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()

    config, train, github_issue = react_task(Path(args.data))

    report: dict = {"machine": machine(), "burst": args.burst, "concurrency": args.concurrency}
    with tempfile.TemporaryDirectory() as tmp, FakeGitHub(token=TOKEN, auto_issue=github_issue) as fake:
        tmp_path = Path(tmp)
        train_run(config, train, None, tmp_path / "run", engine="tfidf")
        if "kill" in args.scenarios:
            report["kill"] = []
            for point in args.kill_points:
                report["kill"].append(kill_scenario(tmp_path / "run", fake, tmp_path, args.burst, point, args.concurrency))
                print(f"kill -9 after {point}: {report['kill'][-1]}", file=sys.stderr, flush=True)
        if "down" in args.scenarios:
            report["github_down"] = down_scenario(tmp_path / "run", fake, tmp_path, args.down_deliveries, args.down_seconds)
            print(f"GitHub down: {report['github_down']}", file=sys.stderr, flush=True)
        if "sigterm" in args.scenarios:
            report["sigterm_while_down"] = sigterm_scenario(tmp_path / "run", fake, tmp_path, args.sigterm_queued)
            print(f"SIGTERM while down: {report['sigterm_while_down']}", file=sys.stderr, flush=True)
        if "flood" in args.scenarios:
            report["flood"] = flood_scenario(tmp_path / "run", fake, tmp_path, args.flood, args.flood_max_queue, args.github_latency, args.concurrency)
            print(f"flood: {report['flood']}", file=sys.stderr, flush=True)
        log_lines = (tmp_path / "serve.log").read_text().splitlines()
        report["log_lines_not_json"] = sum(not line.startswith("{") for line in log_lines)
        report["secret_in_log"] = any(TOKEN in line or SECRET in line for line in log_lines)

    print(f"\n{'SCENARIO':<28} {'ONCE':>6} {'NEVER':>6} {'TWICE':>6}  NOTES")
    for row in report.get("kill", []):
        print(f"{'kill -9 after ' + str(row['kill_after']):<28} {row['labeled_once']:>6} {row['never']:>6} {row['twice_or_more']:>6}  "
              f"resent {row['resent']}")  # fmt: skip
    if down := report.get("github_down"):
        print(f"{'GitHub down ' + str(down['down_seconds']) + ' s':<28} {down['labeled_once']:>6} {down['never']:>6} {down['twice_or_more']:>6}  "
              f"all labeled {down['all_labeled_seconds_after_recovery']} s after recovery, {down['retries']} retries")  # fmt: skip
    if term := report.get("sigterm_while_down"):
        print(f"{'SIGTERM while down':<28} {term['labeled_once']:>6} {term['never']:>6} {term['twice_or_more']:>6}  exit in {term['exit_seconds']} s")
    if flood := report.get("flood"):
        print(f"{'flood ' + str(flood['deliveries']):<28} {flood['accepted'] - flood['accepted_never_labeled']:>6} "
              f"{flood['accepted_never_labeled']:>6} {flood['labeled_twice_or_more']:>6}  of {flood['accepted']} accepted; "
              f"statuses {flood['statuses']}; RSS {flood['rss_mb_at_start']} -> peak {flood['rss_mb_peak']} MB")  # fmt: skip
    print(f"log lines not JSON: {report['log_lines_not_json']}, secret in log: {report['secret_in_log']}")
    write_report(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Teacher annotation at scale against a local OpenAI-compatible server (the tests' fake, real HTTP,
the real `openai` client): 1,000 NLBSE'24 issues, 200 ms per answer, 10% of requests failing
(500s, and 429s with Retry-After), some answers invalid until repaired, a few never valid.

Measured: issues/s at concurrency 16 against concurrency 1 on the same server (the baseline, on a
subset), that every issue ends labeled or explicitly invalid, and that a second run sends nothing.

    python benchmarks/annotate_throughput.py --json docs/results/annotate-throughput.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from common import NLBSE_CONFIG, ROOT, machine, nlbse_data_dir, write_report
from issuelab.annotate.cache import AnnotationCache
from issuelab.annotate.run import annotate, labeled_records
from issuelab.annotate.teachers import Teacher, TeacherPrompt
from issuelab.config import TeacherConfig, load_config
from issuelab.importers import import_issues

sys.path.insert(0, str(ROOT))
from tests.helpers.fake_openai import FakeOpenAI, issue_title  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=nlbse_data_dir())
    parser.add_argument("--issues", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per answer")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--baseline-issues", type=int, default=40, help="issues for the concurrency-1 baseline")
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()

    config = load_config(NLBSE_CONFIG)
    issues, _ = import_issues(Path(args.data) / "issues_train.csv", config.label_names)
    issues = issues[: args.issues]
    for issue in issues:
        issue.title = f"#{issue.id} {issue.title}"  # the answer function finds the gold labels by id
    gold = {issue.id: issue.labels for issue in issues}

    def answer(model: str, messages: list[dict]) -> str:
        number = int(issue_title(messages).split()[0].lstrip("#"))
        repaired = messages[-1]["content"].startswith("That answer was not usable")
        if number % 100 == 7:
            return "It depends."  # never valid
        if number % 20 == 3 and not repaired:
            return f"```\n{', '.join(gold[number])}\n```"  # valid after one repair
        return ", ".join(gold[number])

    report: dict = {"machine": machine(), "issues": len(issues), "latency_s": args.latency, "concurrency": args.concurrency}
    with tempfile.TemporaryDirectory() as tmp, FakeOpenAI(answer, latency=args.latency) as fake:
        def teacher() -> Teacher:
            tc = TeacherConfig(name="fake", model="fake-model", base_url=fake.url, input_price=1.25, output_price=10.0)
            return Teacher(tc, TeacherPrompt(config), log=lambda message: None)

        # Baseline: one request at a time, on a subset, no faults.
        started = time.perf_counter()
        annotate(issues[: args.baseline_issues], [teacher()], AnnotationCache(Path(tmp) / "base.sqlite"), concurrency=1, progress=False)
        report["baseline_issues_per_s"] = round(args.baseline_issues / (time.perf_counter() - started), 2)

        fake.fail(status=500, every=20)
        fake.fail(status=429, headers={"Retry-After": "1"}, every=20)  # with the 500s: 10% of requests fail
        fake.requests.clear()
        cache = AnnotationCache(Path(tmp) / "cache.sqlite")
        started = time.perf_counter()
        result = annotate(issues, [teacher()], cache, concurrency=args.concurrency, progress=True)
        seconds = time.perf_counter() - started
        labeled, invalid, _ = labeled_records(issues, result, config.label_names)
        first_requests = len(fake.requests)
        failed_requests = fake.faulted
        fake.requests.clear()
        again = annotate(issues, [teacher()], cache, concurrency=args.concurrency, progress=False)
        second_requests = len(fake.requests)
        correct = sum(issue.labels == gold[issue.id] for issue in labeled)

    report.update(
        seconds=round(seconds, 2),
        issues_per_s=round(len(issues) / seconds, 2),
        speedup_vs_baseline=round(len(issues) / seconds / report["baseline_issues_per_s"], 1),
        requests=first_requests,
        requests_failed_by_server=failed_requests,
        repairs=first_requests - failed_requests - len(issues),
        labeled=len(labeled),
        invalid=len(invalid),
        unaccounted=len(issues) - len(labeled) - len(invalid),
        labels_equal_to_gold=correct,
        client_failures=result.failed,
        second_run_requests=second_requests,
        second_run_cached=again.cached,
        tokens={"prompt": result.prompt_tokens, "completion": result.completion_tokens},
        cost_usd=round(result.cost, 4),
    )
    print(f"{'TEACHER ANNOTATION, LOCAL SERVER':<50} {'VALUE':>14}")
    print(f"{'-' * 50} {'-' * 14}")
    for name, value in [
        ("issues / answer latency / concurrency", f"{len(issues)} / {args.latency:.1f}s / {args.concurrency}"),
        ("requests sent (failed by the server: 500 or 429)", f"{first_requests} ({failed_requests})"),
        ("repair requests", str(report["repairs"])),
        ("wall time", f"{seconds:.1f} s"),
        ("issues per second", f"{report['issues_per_s']:.1f}/s"),
        ("baseline: concurrency 1, no faults", f"{report['baseline_issues_per_s']:.2f}/s"),
        ("speed-up", f"{report['speedup_vs_baseline']:.1f}x"),
        ("labeled / explicitly invalid / unaccounted", f"{len(labeled)} / {len(invalid)} / {report['unaccounted']}"),
        ("labels equal to the gold labels", f"{correct} of {len(labeled)}"),
        ("second run: requests sent / answers cached", f"{second_requests} / {again.cached}"),
        ("tokens in / out, cost at $1.25 / $10 per M", f"{result.prompt_tokens} / {result.completion_tokens}, ${result.cost:.2f}"),
    ]:
        print(f"{name:<50} {value:>14}")
    write_report(args.json, report)
    return 0 if report["unaccounted"] == 0 and second_requests == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

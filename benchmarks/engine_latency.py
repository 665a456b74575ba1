"""CPU cost of trained runs, one engine per run directory: load time, warm latency labeling one issue
per call (as the Action and the service do), run size on disk and the shared base model it loads.
All runs are timed in the same process on the same issues, one after another.

    python benchmarks/engine_latency.py --runs /work/runs-react/* --json docs/results/engine-latency.json

Issues: the NLBSE'24 facebook/react test set (the first --issues of it).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from common import NLBSE_CONFIG, machine, nlbse_data_dir, write_report
from issuelab.compare import directory_bytes, measure_latency
from issuelab.config import load_config
from issuelab.importers import import_issues
from issuelab.labeler import Labeler


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", required=True, help="run directories")
    parser.add_argument("--data", default=nlbse_data_dir())
    parser.add_argument("--issues", type=int, default=50)
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()

    config = load_config(NLBSE_CONFIG)
    issues, _ = import_issues(Path(args.data) / "issues_test.csv", config.label_names, repos=["facebook/react"])
    issues = issues[: args.issues]
    rows = {}
    runs = [Path(r) for r in args.runs]
    for run in runs:
        name = run.name if [r.name for r in runs].count(run.name) == 1 else f"{run.parent.name}/{run.name}"
        started = time.perf_counter()
        labeler = Labeler.load(run)
        load = time.perf_counter() - started
        p50, p95 = measure_latency(labeler, issues, len(issues))
        shared = sum(directory_bytes(d) for d in set(labeler.engine.shared_files()) if d.exists())
        rows[name] = {"engine": labeler.manifest["engine"], "load_s": round(load, 2), "p50_ms": round(p50 * 1000, 1),
                          "p95_ms": round(p95 * 1000, 1), "run_mb": round(directory_bytes(run) / 1e6, 2),
                          "shared_mb": round(shared / 1e6, 1)}  # fmt: skip
        del labeler
    print(f"{'run':<24} {'engine':<9} {'load s':>7} {'p50 ms':>8} {'p95 ms':>8} {'run MB':>8} {'shared MB':>10}")
    for name, r in rows.items():
        print(f"{name:<24} {r['engine']:<9} {r['load_s']:>7.2f} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} {r['run_mb']:>8.2f} {r['shared_mb']:>10.1f}")
    write_report(args.json, {"machine": machine(), "issues": len(issues), "runs": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Answering with two seeds of the `head` engine whose LoRA sits in the same top layers (`train_layers`):
the loaded runs share the frozen layers below (weights and each issue's states), against the same runs
each reading the issue through every layer, in the same process on the same issues.

    python benchmarks/head_shared_layers.py --json docs/results/head-shared-layers.json

An `ensemble` of `head` twice (Gemma 3 270M cut to 13 layers, 512 tokens, `train_layers = 4`) is trained
on the first --train issues of NLBSE'24 facebook/react for one epoch (what the adapters learned does not
change what answering costs), saved and loaded. Then the next --issues issues are labeled one per call
(as the webhook service does), after two untimed warm-up calls on training issues: p50 and p95 ms per issue, the scores of
the two ways compared, and the parameter bytes the loaded ensemble holds (tensors shared counted once).
The baseline loads each member as before: its own copy of every layer, each issue through all of them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import NLBSE_CONFIG, machine, nlbse_data_dir, percentile, write_report
from issuelab.config import load_config
from issuelab.engines import llm_head
from issuelab.importers import import_issues
from issuelab.labeler import Labeler
from issuelab.train import train_run


def parameter_bytes(members) -> int:
    seen, total = set(), 0
    for member in members:
        for tensor in member.backbone.parameters():
            if tensor.data_ptr() not in seen:
                seen.add(tensor.data_ptr())
                total += tensor.numel() * tensor.element_size()
    return total


def time_calls(labeler: Labeler, issues, warm_up) -> tuple[list[float], np.ndarray]:
    for issue in warm_up:
        labeler.engine.predict_scores([issue])  # not timed, and not among the timed issues
    times, scores = [], []
    for issue in issues:
        started = time.perf_counter()
        scores.append(labeler.engine.predict_scores([issue])[0])
        times.append((time.perf_counter() - started) * 1000)
    return times, np.array(scores)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=nlbse_data_dir())
    parser.add_argument("--train", type=int, default=24)
    parser.add_argument("--issues", type=int, default=20)
    parser.add_argument("--train-layers", type=int, default=4)
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()

    config = load_config(NLBSE_CONFIG)
    issues, _ = import_issues(f"{args.data}/issues_train.csv", config.label_names, repos=["facebook/react"])
    train, test = issues[: args.train], issues[args.train : args.train + args.issues]
    config.train.engine_options["head"] = {"layers": 13, "train_layers": args.train_layers, "epochs": 1}
    config.train.engine_options["ensemble"] = {"engines": ["head", "head"], "weights": [1, 1]}
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        train_run(config, train, None, run, engine="ensemble")
        share = llm_head.HeadEngine._share_frozen_layers
        for way in ("every layer, each member", "frozen layers shared"):
            llm_head._SHARED_FROZEN.clear()
            # the baseline loads each member as a run of its own: its own layers, its whole forward pass
            llm_head.HeadEngine._share_frozen_layers = share if way.startswith("frozen") else lambda *args: None
            labeler = Labeler.load(run)
            members = labeler.engine.members
            times, scores = time_calls(labeler, test, train[:2])
            rows[way] = {
                "p50_ms": round(percentile(times, 0.5), 1), "p95_ms": round(percentile(times, 0.95), 1),
                "parameter_mb": round(parameter_bytes(members) / 1e6, 1), "scores": scores,
            }  # fmt: skip
            print(f"{way}: p50 {rows[way]['p50_ms']} ms", file=sys.stderr)
            del labeler, members
    base, shared = rows["every layer, each member"], rows["frozen layers shared"]
    difference = float(np.abs(base.pop("scores") - shared.pop("scores")).max())
    print(f"{'two seeds of the head, one issue per call':<42} {'p50 ms':>8} {'p95 ms':>8} {'params MB':>10}")
    for way, r in rows.items():
        print(f"{way:<42} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} {r['parameter_mb']:>10.1f}")
    speedup = base["p50_ms"] / shared["p50_ms"]
    print(f"speed-up (p50): {speedup:.2f}x; largest score difference between the two ways: {difference:.2e}")
    write_report(args.json, {
        "machine": machine(), "command": " ".join(sys.argv), "train_issues": len(train), "timed_issues": len(test),
        "train_layers": args.train_layers, "rows": rows, "speedup_p50": round(speedup, 2), "max_score_difference": difference,
    })  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The `head` engine's training cost on CPU with its frozen layers cached (`train_layers`), against LoRA in
every layer run, measured in the same process on the same issues.

    python benchmarks/head_cpu.py --json docs/results/head-cpu.json
    python benchmarks/head_cpu.py --train-layers 4 --dtypes float32 bfloat16   # training's products in bfloat16

Gemma 3 270M cut to its first 13 layers (the NLBSE'24 recipe), 512 tokens, LoRA r = 16, batches of 8;
the first --issues training issues of NLBSE'24 facebook/react, --epochs epochs, after a warm-up fit per
dtype (a step on 8 issues: the base model read from disk, the kernels set up). Per configuration: the whole
`fit` (wall and CPU seconds, all threads, loading the base model and the pass that keeps the training
issues for `explain` included), the one pass through the frozen layers and the training steps, per issue;
and what the last two cost for the recipe's 300 issues x 3 epochs (900 training passes).
"""

from __future__ import annotations

import argparse
import sys
import time

from common import NLBSE_CONFIG, machine, nlbse_data_dir, write_report
from issuelab.config import load_config
from issuelab.engines.llm_head import HeadEngine, HeadOptions
from issuelab.importers import import_issues
from issuelab.train import make_task


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=nlbse_data_dir())
    parser.add_argument("--issues", type=int, default=24)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--train-layers", type=int, nargs="+", default=[0, 4, 6])
    parser.add_argument("--dtypes", nargs="+", default=["float32"], choices=["float32", "bfloat16", "auto"],
                        help="inference_dtype per configuration; bfloat16 also runs training's matrix products in it")
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()

    config = load_config(NLBSE_CONFIG)
    issues, _ = import_issues(f"{args.data}/issues_train.csv", config.label_names, repos=["facebook/react"])
    issues = issues[: args.issues]
    task = make_task(config, issues)
    for dtype in args.dtypes:  # warm-up, not timed: each dtype's kernels set up before any is timed
        HeadEngine(HeadOptions(layers=13, epochs=1, inference_dtype=dtype)).fit(issues[:8], None, task, 0)
    rows = {}
    for dtype, train_layers in [(d, t) for d in args.dtypes for t in args.train_layers]:
        name = f"train_layers={train_layers}" + (f" {dtype}" if len(args.dtypes) > 1 else "")
        engine = HeadEngine(HeadOptions(layers=13, train_layers=train_layers, epochs=args.epochs, inference_dtype=dtype))
        started, cpu_started = time.perf_counter(), time.process_time()
        engine.fit(issues, None, task, 0)
        fit, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        frozen = engine.info.get("frozen_pass_seconds", 0.0)
        training = engine.info["train_seconds"] - frozen
        examples = engine.info["steps"] * engine.options.batch_size
        per_issue = {"frozen_pass_s": frozen / len(issues), "training_s": training / examples}
        projected = 300 * per_issue["frozen_pass_s"] + 900 * per_issue["training_s"]
        rows[name] = {
            "fit_s": round(fit, 1), "fit_cpu_s": round(cpu, 1), "frozen_layers": engine.info["frozen_layers_cached"],
            **{k: round(v, 3) for k, v in per_issue.items()}, "projected_300x3_min": round(projected / 60, 1),
        }  # fmt: skip
        print(f"{name}: {rows[name]}", file=sys.stderr)
    base = next(iter(rows.values()))["projected_300x3_min"]
    print(f"{'':<25} {'fit s':>7} {'CPU s':>7} {'frozen s/issue':>15} {'train s/issue-epoch':>20} {'300 x 3 min':>12} {'speed-up':>9}")
    for name, r in rows.items():
        print(f"{name:<25} {r['fit_s']:>7.1f} {r['fit_cpu_s']:>7.1f} {r['frozen_pass_s']:>15.3f} {r['training_s']:>20.3f} "
              f"{r['projected_300x3_min']:>12.1f} {base / r['projected_300x3_min']:>8.2f}x")  # fmt: skip
    write_report(args.json, {"machine": machine(), "issues": len(issues), "epochs": args.epochs, "dtypes": args.dtypes, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The LLM route to any label set, zero-shot: the base model (Gemma 3 270M) given the target's label list
(names and descriptions) in the seed's prompt, its answer constrained to that set, beside MiniLM
description similarity on the same issues in the same run.

Targets and test issues are those of `any_label_set.py` (NLBSE'24 repositories with GitHub's default
descriptions, macro F1 on the top label; sklearn, mrtk, hf-datasets, micro F1 on the newest 40%);
`--sample N` scores a seeded sample of each target's test issues to bound CPU time.

    python benchmarks/zero_shot_llm.py --targets sklearn mrtk hf-datasets --sample 150 --json docs/results/zero-shot-llm.json
"""

from __future__ import annotations

import argparse
import random
import sys
import time

import numpy as np

from any_label_set import ZERO_SHOT_BASELINE, load_targets, score
from common import machine, write_report
from issuelab.data import Issue
from issuelab.llm.base_model import DEFAULT_BASE_MODEL, load_base_model, resolve_base_model
from issuelab.llm.decoding import TorchDecoder
from issuelab.llm.encoding import PromptEncoder
from issuelab.metrics import score_outputs
from issuelab.prompt import SEED_TEMPLATE

LLM = "base Gemma 3 270M, label list in the prompt, constrained"


def llm_outputs(model, tokenizer, target, issues: list[Issue]) -> tuple[list[str], float]:
    """The constrained answers (the top-scored label alone for a single-label target) and ms per issue."""
    labels = [(label.name, label.description) for label in target.labels]
    decoder = TorchDecoder(model, PromptEncoder(tokenizer, SEED_TEMPLATE, labels), max_new_tokens=32)
    names, outputs = [name for name, _ in labels], []
    started = time.perf_counter()
    for issue in issues:
        chosen, scores = decoder.constrained(issue)
        outputs.append(names[int(np.argmax(scores))] if target.single_label else ", ".join(names[k] for k in chosen))
    return outputs, 1000 * (time.perf_counter() - started) / max(1, len(issues))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", nargs="+", default=["sklearn", "mrtk", "hf-datasets"])
    parser.add_argument("--sample", type=int, default=150, help="test issues per target (0: all)")
    parser.add_argument("--base-model", default=DEFAULT_BASE_MODEL)
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()

    targets = load_targets()
    unknown = [t for t in args.targets if t not in targets]
    if unknown:
        raise SystemExit(f"error: unknown targets {unknown}; choose from {', '.join(targets)}")
    model, tokenizer = load_base_model(resolve_base_model(args.base_model).path)
    model.eval()
    results = {}
    for name in args.targets:
        target = targets[name]
        if args.sample and args.sample < len(target.test):
            target.test = random.Random(0).sample(target.test, args.sample)
        gold, names = [i.labels for i in target.test], [label.name for label in target.labels]
        outputs, ms = llm_outputs(model, tokenizer, target, target.test)
        m = score_outputs(LLM, gold, outputs, names)
        baseline = score(target, "fewshot", [("fewshot.center", False)], [], 0, False)
        results[name] = {"metric": target.metric, "test_issues": len(target.test),
                         LLM: {"micro_f1": m.f1, "macro_f1": m.macro_f1, "invalid": m.invalid, "predict_ms": ms},
                         ZERO_SHOT_BASELINE: baseline}  # fmt: skip
        metric = target.metric
        print(f"{name}: {metric} LLM {results[name][LLM][metric]:.3f} ({ms:.0f} ms/issue), "
              f"description similarity {baseline[metric]:.3f}, {len(target.test)} issues", file=sys.stderr, flush=True)  # fmt: skip
    print(f"\n{'TARGET':<12} {'METRIC':<9} {'LLM':>7} {'DESC-SIM':>9} {'ISSUES':>7} {'LLM MS':>7}")
    for name, r in results.items():
        print(f"{name:<12} {r['metric']:<9} {r[LLM][r['metric']]:>7.3f} {r[ZERO_SHOT_BASELINE][r['metric']]:>9.3f} "
              f"{r['test_issues']:>7d} {r[LLM]['predict_ms']:>7.0f}")  # fmt: skip
    write_report(args.json, {"base_model": args.base_model, "sample": args.sample, "machine": machine(), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())

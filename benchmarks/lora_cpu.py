"""The lora engine on CPU: training cost per example and per-issue latency, against baselines
measured in the same run.

Training (Gemma 3 270M, LoRA r=16, the seed's prompt and 16 labels, real issue texts):
  seconds per training example with logits at the answer positions only (ours), the same with
  full logits (baseline), and with the compact prompt (labels without descriptions).
Latency per issue on 600-token prompts (issues whose prompt is longer, cut to 600 tokens), after one
  warm-up: constrained decoding from the cached prompt prefix (ours), unconstrained greedy from the
  cached prefix, and the seed's way as the baseline: transformers `generate` on the whole prompt, no
  cache reuse. Plus the cold load of a run directory. The adapter is trained for a few steps at a
  high learning rate so that it answers as briefly as a fine-tuned model does (one or two labels):
  the number of decoding steps is part of the latency.

    python benchmarks/lora_cpu.py --json docs/results/lora-cpu.json

Issue texts: NLBSE'24 facebook/react (bug -> bug, feature -> enhancement, question -> question).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, machine, nlbse_data_dir, percentile, write_report
from issuelab.config import load_config, with_engine_settings
from issuelab.importers import import_issues
from issuelab.labeler import Labeler
from issuelab.train import train_run


def seconds_per_example(engine, issues, full_logits: bool, steps: int) -> float:
    """Forward + backward on single examples through the fitted PEFT model."""
    import torch

    from issuelab.engines.lora import answer_loss, collate_answers

    model, encoder = engine.model, engine.encoder
    model.train()
    pad = encoder.tokenizer.pad_token_id or 0
    times = []
    for issue in issues[:steps]:
        batch = collate_answers([(encoder.prompt_ids(issue), encoder.answer_ids(issue.labels))], pad)
        started = time.perf_counter()
        if full_logits:
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            logits = out.logits[0][batch["answer_mask"][0]].float()
            loss = torch.nn.functional.cross_entropy(logits, batch["targets"])
        else:
            loss = answer_loss(model, batch)
        loss.backward()
        model.zero_grad()
        times.append(time.perf_counter() - started)
    model.eval()
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=nlbse_data_dir())
    parser.add_argument("--issues", type=int, default=20, help="issues timed per latency measure")
    parser.add_argument("--train-steps", type=int, default=6, help="single-example steps timed per training measure")
    parser.add_argument("--prompt-tokens", type=int, default=600, help="prompt length for the latency measures")
    parser.add_argument("--adapter-steps", type=int, default=20, help="training steps (batch 2) of the adapter that answers")
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(torch.get_num_threads())
    config = load_config(ROOT / "examples/nebari/issuelab.toml")
    aliases = {"feature": "enhancement"}
    issues, _ = import_issues(Path(args.data) / "issues_test.csv", config.label_names, repos=["facebook/react"], aliases=aliases)
    train = issues[:8]
    config.train.engine_options = {"lora": {"max_steps": args.adapter_steps, "batch_size": 2, "learning_rate": 1e-3}}
    report: dict = {"machine": machine(), "threads": torch.get_num_threads()}

    with tempfile.TemporaryDirectory() as tmp:
        labeler, _ = train_run(config, train, None, Path(tmp) / "run", engine="lora")
        engine = labeler.engine
        long_enough = [i for i in issues[8:] if len(engine.encoder.prompt_ids(i)) >= args.prompt_tokens]
        test = long_enough[: args.issues]
        prompt_tokens = statistics.median(len(engine.encoder.prompt_ids(i)) for i in train)
        report["train"] = {
            "median_prompt_tokens": prompt_tokens,
            "answer_logits_s_per_example": round(seconds_per_example(engine, train, False, args.train_steps), 3),
            "full_logits_s_per_example": round(seconds_per_example(engine, train, True, args.train_steps), 3),
        }
        compact_config = with_engine_settings(config, [("lora.prompt", "compact")])
        compact, _ = train_run(compact_config, train, None, Path(tmp) / "compact", engine="lora")
        report["train"]["compact_prompt_tokens"] = statistics.median(len(compact.engine.encoder.prompt_ids(i)) for i in train)
        report["train"]["compact_answer_logits_s_per_example"] = round(
            seconds_per_example(compact.engine, train, False, args.train_steps), 3
        )
        del compact

        engine_json = Path(tmp) / "run/model/engine.json"
        saved = engine_json.read_text().replace('"max_prompt_tokens": 1024', f'"max_prompt_tokens": {args.prompt_tokens}')
        engine_json.write_text(saved.replace('"backend": "auto"', '"backend": "torch"'))
        started = time.perf_counter()
        loaded = Labeler.load(Path(tmp) / "run")  # inference_dtype "auto"
        report["cold_load_seconds"] = round(time.perf_counter() - started, 2)
        report["auto_dtype"] = str(next(loaded.engine.model.parameters()).dtype).removeprefix("torch.")
        engine_json.write_text(saved.replace('"inference_dtype": "auto"', '"inference_dtype": "float32"').replace('"backend": "auto"', '"backend": "torch"'))
        fp32 = Labeler.load(Path(tmp) / "run")
        llama = None
        if importlib.util.find_spec("llama_cpp"):
            os.environ["ISSUELAB_LORA_BACKEND"] = "llamacpp"
            started = time.perf_counter()
            llama = Labeler.load(Path(tmp) / "run")
            report["cold_load_seconds_llamacpp"] = round(time.perf_counter() - started, 2)
            del os.environ["ISSUELAB_LORA_BACKEND"]

    decoder, encoder, model = fp32.engine.decoder, fp32.engine.encoder, fp32.engine.model

    def seed_baseline(issue):
        ids = torch.tensor([encoder.prompt_ids(issue)])
        with torch.inference_mode():
            model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=64, do_sample=False, eos_token_id=encoder.end_id)

    answers: dict[str, list] = {}
    measures = {
        f"constrained, cached prefix, {report['auto_dtype']} (ours)": loaded.engine.decoder.constrained,
        "constrained, cached prefix, float32": decoder.constrained,
        "unconstrained, cached prefix, float32": decoder.unconstrained,
        "baseline: generate, full prompt, float32": seed_baseline,
    }
    if llama is not None:
        measures["constrained, cached prefix, llama.cpp Q4_K_M"] = llama.engine.decoder.constrained
    report["latency_s"] = {}
    for name, fn in measures.items():
        fn(test[0])  # warm-up
        times, answers[name] = [], []
        for issue in test:
            started = time.perf_counter()
            answers[name].append(fn(issue))
            times.append(time.perf_counter() - started)
        report["latency_s"][name] = {"p50": round(percentile(times, 0.5), 3), "p95": round(percentile(times, 0.95), 3)}
    report["latency_prompt_tokens"] = sorted({len(loaded.engine.encoder.prompt_ids(i)) for i in test})
    report["labels_per_answer"] = statistics.mean(len(a[0]) for a in answers[list(measures)[0]])
    ours, exact = list(measures)[:2]
    report["answers_equal_to_float32"] = sum(a[0] == b[0] for a, b in zip(answers[ours], answers[exact])) / len(test)
    if llama is not None:
        llama_answers = answers["constrained, cached prefix, llama.cpp Q4_K_M"]
        report["llamacpp_answers_equal_to_float32"] = sum(a[0] == b[0] for a, b in zip(llama_answers, answers[exact])) / len(test)
    base = report["latency_s"]["baseline: generate, full prompt, float32"]["p50"]
    report["speedup_p50_vs_baseline"] = round(base / report["latency_s"][ours]["p50"], 2)

    t = report["train"]
    print(f"{'TRAINING (CPU, per example)':<44} {'VALUE':>12}")
    print(f"{'-' * 44} {'-' * 12}")
    print(f"{'answer-only logits, full prompt':<44} {t['answer_logits_s_per_example']:>10.2f} s")
    print(f"{'  baseline: full logits, full prompt':<44} {t['full_logits_s_per_example']:>10.2f} s")
    print(f"{'answer-only logits, compact prompt':<44} {t['compact_answer_logits_s_per_example']:>10.2f} s")
    print(f"{'prompt tokens (median): full / compact':<44} {t['median_prompt_tokens']:>5.0f} / {t['compact_prompt_tokens']:<4.0f}")
    print(f"\n{'INFERENCE (CPU, per issue)':<44} {'P50':>7} {'P95':>7}")
    print(f"{'-' * 44} {'-' * 7} {'-' * 7}")
    for name, v in report["latency_s"].items():
        print(f"{name:<48} {v['p50']:>6.2f}s {v['p95']:>6.2f}s")
    print(f"{'prompt tokens / labels per answer (ours)':<44} {'/'.join(map(str, report['latency_prompt_tokens']))} / {report['labels_per_answer']:.2f}")
    print(f"{'speed-up p50 vs baseline (ours)':<44} {report['speedup_p50_vs_baseline']:>6.2f}x")
    print(f"{'answers equal to float32 constrained':<44} {report['answers_equal_to_float32']:>6.0%}")
    print(f"{'cold load of a run (base + adapter merge)':<44} {report['cold_load_seconds']:>6.2f}s")
    if llama is not None:
        print(f"{'llama.cpp answers equal to float32':<44} {report['llamacpp_answers_equal_to_float32']:>6.0%}")
        print(f"{'cold load of a run, llama.cpp':<44} {report['cold_load_seconds_llamacpp']:>6.2f}s")
    write_report(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

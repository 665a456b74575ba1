"""`lora`: the seed's model. A small causal LM (Gemma 3 270M by default) fine-tuned with LoRA to
answer the labeling prompt with a CSV line of labels; decoding constrained to the label set.

Training computes logits only at the answer positions (transformers' boolean `logits_to_keep`):
a 262k-token vocabulary makes full logits the largest cost of a step on CPU. Loss is on the answer
tokens only. Defaults follow the seed's run (LoRA on q,k,v,o,gate,up,down; rsLoRA; lr 5e-5; batch 8;
warmup 5) with early stopping on eval loss, the best adapter restored. On CUDA: bf16 autocast and
SDPA attention; under `accelerate launch` it trains data-parallel unchanged.

The run directory holds the adapter (PEFT safetensors, and the same as a llama.cpp GGUF LoRA) and
the prompt; the base model comes from the model cache (see issuelab.llm.base_model). Answering runs
on llama.cpp when the `llamacpp` extra is installed (it starts 4x faster), else on transformers.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Issue, write_json
from ..errors import IssuelabError
from ..llm.adapter import AdapterOptions, lora_config, micro_batch, require_lora_extra
from ..llm.base_model import check_inference_dtype, pad_token_id
from ..options import options_from_json
from ..runtime import device as default_device
from . import BaseEngine, EngineInfo, Task


@dataclass
class LoraOptions(AdapterOptions):
    prompt: str = "full"  # full: the config's prompt; compact: labels without descriptions
    learning_rate: float = 5e-5
    warmup_steps: int = 5
    epochs: float = 3.0
    max_steps: int = 0  # > 0 overrides epochs
    evals_per_epoch: int = 4  # eval loss this often, for early stopping
    patience: int = 3  # evals without improvement before stopping
    max_prompt_tokens: int = 1024  # long issues are cut to fit
    max_new_tokens: int = 64
    # Answering: "auto" is bfloat16 on CUDA and on CPUs with AVX512-BF16/AMX, float32 elsewhere.
    inference_dtype: str = "auto"  # auto | float32 | bfloat16
    # Answering backend: llama.cpp on the Q4_K_M base (extra `llamacpp`) starts 4x faster in half the
    # memory (docs/benchmarks.md); "auto" takes it when installed and the base is the PyPI GGUF, else
    # torch. The environment variable ISSUELAB_LORA_BACKEND overrides it when a run is loaded.
    backend: str = "auto"  # auto | torch | llamacpp

    def __post_init__(self) -> None:
        if self.prompt not in ("full", "compact"):
            raise ValueError(f'prompt must be "full" or "compact", got {self.prompt!r}')
        if self.backend not in ("auto", "torch", "llamacpp"):
            raise ValueError(f'backend must be "auto", "torch" or "llamacpp", got {self.backend!r}')
        check_inference_dtype(self.inference_dtype)
        super().__post_init__()


def collate_answers(batch: list[tuple[list[int], list[int]]], pad_id: int):
    """Right-padded (prompt + answer) rows; answer_mask marks the positions whose next token is an answer token."""
    import torch

    width = max(len(p) + len(a) for p, a in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    answer_mask = torch.zeros((len(batch), width), dtype=torch.bool)
    targets = []
    for row, (prompt, answer) in enumerate(batch):
        ids = prompt + answer
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
        answer_mask[row, len(prompt) - 1 : len(ids) - 1] = True
        targets += answer
    return {"input_ids": input_ids, "attention_mask": attention_mask, "answer_mask": answer_mask, "targets": torch.tensor(targets)}


def answer_loss(model, batch, reduction: str = "mean"):
    """Cross-entropy on the answer tokens, with logits computed only at those positions."""
    import torch.nn.functional as F

    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=batch["answer_mask"])
    logits = out.logits.reshape(-1, out.logits.shape[-1]).float()  # (answer tokens, vocab)
    return F.cross_entropy(logits, batch["targets"], reduction=reduction)


@dataclass
class _Steps:
    steps: int
    history: list[dict[str, Any]]
    best_eval_loss: float | None
    best_state: dict | None  # the adapter's weights at the best eval loss
    stopped_early: bool


def _eval_loss(model, loader, accelerator) -> float:
    """Mean answer-token loss over `loader`, summed across processes."""
    import torch

    model.eval()
    total = torch.zeros(2, device=accelerator.device)
    with torch.no_grad():
        for batch in loader:
            total += torch.stack([answer_loss(model, batch, "sum"), torch.tensor(float(len(batch["targets"])), device=accelerator.device)])
    model.train()
    total = accelerator.reduce(total, reduction="sum")
    return (total[0] / total[1]).item()


def _train_steps(model, accelerator, optimizer, scheduler, train_loader, eval_loader, total_steps: int, eval_every: int,
                 patience: int) -> _Steps:  # fmt: skip
    """Optimizer steps (micro-batches accumulated by accelerate) until `total_steps`, or until the eval loss
    has not improved `patience` times in a row; keeps the adapter of the best eval loss."""
    from peft import get_peft_model_state_dict
    from tqdm.auto import tqdm

    history, best_loss, best_state, bad_evals, step = [], math.inf, None, 0, 0
    bar = tqdm(total=total_steps, desc="lora: training", unit="step", disable=not accelerator.is_main_process)
    running: list[float] = []
    model.train()
    while step < total_steps:
        for batch in train_loader:
            with accelerator.accumulate(model):
                loss = answer_loss(model, batch)
                accelerator.backward(loss)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            running.append(loss.item())
            if not accelerator.sync_gradients:
                continue
            step += 1
            train_loss = sum(running) / len(running)
            running = []
            postfix = {"loss": f"{train_loss:.4f}"}
            record: dict[str, Any] = {"step": step, "train_loss": round(train_loss, 5)}
            if eval_loader is not None and (step % eval_every == 0 or step == total_steps):
                record["eval_loss"] = round(_eval_loss(model, eval_loader, accelerator), 5)
                postfix["eval"] = f"{record['eval_loss']:.4f}"
                if record["eval_loss"] < best_loss - 1e-4:
                    best_loss, bad_evals = record["eval_loss"], 0
                    unwrapped = accelerator.unwrap_model(model)
                    best_state = {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(unwrapped).items()}
                else:
                    bad_evals += 1
            history.append(record)
            bar.set_postfix(postfix)
            bar.update()
            if step >= total_steps or bad_evals >= patience:
                break
        if bad_evals >= patience:
            break
    bar.close()
    return _Steps(step, history, None if best_loss == math.inf else round(best_loss, 5), best_state, bad_evals >= patience)


class LoraEngine(BaseEngine):
    name = "lora"
    Options = LoraOptions
    generative = True

    def quick_to_fit(self, task: Task) -> bool:
        return False

    def __init__(self, options: LoraOptions | None = None):
        self.options = options or LoraOptions()
        self.model = None  # a PeftModel while training; merged weights after load
        self.encoder = None
        self.decoder = None
        self.base = None  # llm.base_model.BaseModelInfo
        self.info: EngineInfo = {}

    # -- training ------------------------------------------------------------------------------

    def fit(self, train: list[Issue], eval: list[Issue] | None, task: Task, seed: int = 0) -> None:
        require_lora_extra()
        import torch
        from accelerate import Accelerator
        from accelerate.utils import set_seed
        from peft import get_peft_model, set_peft_model_state_dict
        from torch.utils.data import DataLoader
        from transformers import get_linear_schedule_with_warmup

        from ..llm.base_model import load_base_model, resolve_base_model
        from ..llm.encoding import PromptEncoder

        opts = self.options
        set_seed(seed)
        cuda = default_device() == "cuda"
        micro = micro_batch(opts, default_device())
        accelerator = Accelerator(
            mixed_precision="bf16" if cuda and torch.cuda.is_bf16_supported() else "no",
            gradient_accumulation_steps=max(1, opts.batch_size // micro),
        )
        self.base = base = resolve_base_model(opts.base_model, progress=accelerator.is_main_process)
        model, tokenizer = load_base_model(base.path, dtype=torch.float32)  # fp32 master weights; bf16 autocast on GPU
        self.encoder = PromptEncoder(tokenizer, task.prompt, task.label_pairs, opts.max_prompt_tokens, opts.prompt == "full")
        model = get_peft_model(model, lora_config(opts, task_type="CAUSAL_LM"))

        def encode(issues: list[Issue]) -> list[tuple[list[int], list[int]]]:
            return [(self.encoder.prompt_ids(i), self.encoder.answer_ids(i.labels)) for i in issues]

        pad_id = pad_token_id(tokenizer)
        collate = lambda batch: collate_answers(batch, pad_id)  # noqa: E731
        generator = torch.Generator().manual_seed(seed)
        train_loader = DataLoader(encode(train), batch_size=micro, shuffle=True, collate_fn=collate, generator=generator)
        eval_loader = DataLoader(encode(eval), batch_size=micro, collate_fn=collate) if eval else None

        steps_per_epoch = math.ceil(len(train) / opts.batch_size)
        total_steps = opts.max_steps or max(1, math.ceil(opts.epochs * steps_per_epoch))
        eval_every = max(1, steps_per_epoch // max(1, opts.evals_per_epoch))
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=opts.learning_rate, weight_decay=opts.weight_decay)
        scheduler = get_linear_schedule_with_warmup(optimizer, opts.warmup_steps, total_steps)
        model, optimizer, train_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, scheduler)
        if eval_loader is not None:
            eval_loader = accelerator.prepare(eval_loader)

        started = time.perf_counter()
        steps = _train_steps(model, accelerator, optimizer, scheduler, train_loader, eval_loader, total_steps, eval_every, opts.patience)
        model = accelerator.unwrap_model(model)
        if steps.best_state is not None:  # early stopping: the best adapter seen on eval
            set_peft_model_state_dict(model, steps.best_state)
        model.eval()
        self.model = model
        self.info = {
            "base_model": base.to_json(),
            "steps": steps.steps,
            "stopped_early": steps.stopped_early,
            "best_eval_loss": steps.best_eval_loss,
            "train_seconds": round(time.perf_counter() - started, 2),
            "seconds_per_example": round((time.perf_counter() - started) / max(1, steps.steps * opts.batch_size), 3),
            "history": steps.history,
        }
        self._make_decoder()

    def _make_decoder(self) -> None:
        from ..llm.decoding import TorchDecoder

        self.decoder = TorchDecoder(self.model, self.encoder, self.options.max_new_tokens)

    # -- inference -----------------------------------------------------------------------------

    def predict_scores(self, issues: list[Issue]) -> np.ndarray:
        scores = np.zeros((len(issues), len(self.encoder.labels)))
        for row, issue in enumerate(issues):
            _, scores[row] = self.decoder.constrained(issue)
        return scores

    def generate(self, issues: list[Issue], constrained: bool = True) -> list[str]:
        """The model's answers as text: constrained (always valid) or unconstrained (raw, as the seed ran it)."""
        names = [name for name, _ in self.encoder.labels]
        if constrained:
            return [", ".join(names[k] for k in self.decoder.constrained(i)[0]) for i in issues]
        return [self.decoder.unconstrained(i) for i in issues]

    def explain(self, issue: Issue, labels: list[str], names: list[str], top: int = 3) -> dict[str, list[str]]:
        """What a generative model can show for itself: its own (constrained) answer, and whether it names the label."""
        (answer,) = self.generate([issue])
        said = {name.strip() for name in answer.split(",")}
        return {label: [f"the model's answer: {answer!r} ({'names it' if label in said else 'does not name it; scored by its token probabilities'})"]
                for label in labels}  # fmt: skip

    def shared_files(self) -> list[Path]:
        return [self.base.path] if self.base else []  # the base model, from the model cache

    # -- persistence ---------------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        from ..llm.llamacpp import export_adapter_gguf

        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(directory / "adapter")  # adapter_model.safetensors + adapter_config.json
        if self.model.config.model_type.startswith("gemma3"):  # for the llama.cpp backend
            export_adapter_gguf(directory / "adapter", directory / "adapter.gguf")
        write_json(directory / "engine.json", {"options": asdict(self.options), "template": self.encoder.template,
                                               "labels": self.encoder.labels, "info": self.info})  # fmt: skip

    @classmethod
    def load(cls, directory: Path, device: str | None = None) -> LoraEngine:
        from ..llm.base_model import resolve_base_model
        from ..llm.encoding import PromptEncoder
        from ..llm.tokenizer import FastTokenizer

        saved = json.loads((directory / "engine.json").read_text(encoding="utf-8"))
        options = options_from_json(LoraOptions, saved["options"])
        options.backend = os.environ.get("ISSUELAB_LORA_BACKEND", options.backend)
        options.__post_init__()
        engine = cls(options)
        engine.info = saved["info"]
        engine.base = base = resolve_base_model(options.base_model, progress=True)
        tokenizer = FastTokenizer(base.path)  # no transformers import: the llama.cpp path stays light
        labels = [tuple(pair) for pair in saved["labels"]]
        engine.encoder = PromptEncoder(tokenizer, saved["template"], labels, options.max_prompt_tokens, options.prompt == "full")
        llamacpp_ready = base.gguf is not None and (directory / "adapter.gguf").exists()
        if options.backend == "auto":
            import importlib.util

            options.backend = "llamacpp" if llamacpp_ready and importlib.util.find_spec("llama_cpp") else "torch"
        if options.backend == "llamacpp":
            from ..llm.llamacpp import LlamaCppDecoder

            if not llamacpp_ready:
                raise IssuelabError(
                    f"{directory}: the llama.cpp backend needs the default base model (a GGUF) and model/adapter.gguf; "
                    "use backend = \"torch\" for other bases"
                )
            engine.decoder = LlamaCppDecoder(base.gguf, directory / "adapter.gguf", engine.encoder, options.max_new_tokens)
            return engine
        require_lora_extra()
        engine.model = cls._merged_model(base.path, directory / "adapter", options, device)
        engine._make_decoder()
        return engine

    @staticmethod
    def _merged_model(base_path: Path, adapter_dir: Path, options: LoraOptions, device: str | None):
        import torch
        from peft import PeftModel

        from ..llm.base_model import inference_dtype, load_base_model

        device = device or default_device()
        model, _ = load_base_model(base_path, device=device, dtype=torch.float32)
        # Merged into the base weights in float32, then cast: answering costs what the base model costs.
        merged = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
        return merged.to(inference_dtype(options.inference_dtype, device)).eval()

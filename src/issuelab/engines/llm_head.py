"""`head`: the LLM as a classifier. The base model of the `lora` engine (Gemma 3 270M by default) reads
the issue once; its hidden states, mean-pooled over the issue's tokens and layer-normalised, go
through a linear layer with one output per label. LoRA adapts the backbone, the head is trained in
full: binary cross-entropy for multi-label data, cross-entropy for single-label data. One forward pass per issue and no decoding, so
answering costs the prefill only and every label gets a score. With `train_layers = N` LoRA adapts the
top N layers only: the frozen layers below read each training issue once, and every epoch starts from
their cached output, so training costs what the top layers cost. Loaded runs that froze the same layers
of the same base (the seeds of one head in an ensemble) share them, and each issue goes through them once.

Input: the title, a blank line, then the body, cut to `max_tokens` tokens: the title always stays.
The run directory holds the LoRA adapter (PEFT safetensors), the head (safetensors) and engine.json;
the base model comes from the model cache, as for `lora`. Nothing is pickled.
"""

from __future__ import annotations

import json
import math
import sys
import time
import weakref
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..data import Issue, issue_reference, write_json
from ..errors import IssuelabError
from ..llm.adapter import AdapterOptions, lora_config, micro_batch, require_lora_extra
from ..llm.base_model import check_inference_dtype, inference_dtype, pad_token_id, resolve_base_model, training_autocast
from ..metrics import gold_matrix
from ..options import options_from_json
from ..runtime import device as default_device
from . import BaseEngine, EngineInfo, Task, similar_labeled
from .linear_heads import classification_loss, fit_logistic_heads, probabilities
from .torch_loop import bfloat16_products, train_loop

_LAST_FROZEN_STATES: dict[tuple, tuple] = {}  # (base model, frozen layers, device) -> (token rows, their states)
KEEP_FROZEN_STATES_BYTES = 2 * 1024**3  # kept after training for the next seed up to this size (1,600 issues at 512 tokens)
SHARED_STATES_BYTES = 256 * 1024**2  # states kept for the next member (about 200 issues at 512 tokens, float32)


def tensor_bytes(tensor) -> int:
    return tensor.numel() * tensor.element_size()


class SharedFrozenLayers:
    """What loaded runs whose LoRA sits above the same frozen layers of one base (the seeds of one head in an
    ensemble) share: the embeddings and those layers (the base model's in every such run), and each issue's
    states through them, so one pass serves every member (least recently used out past SHARED_STATES_BYTES)."""

    def __init__(self, embeddings, layers: list):
        self.embeddings, self.layers = embeddings, layers
        self.states: OrderedDict[tuple, object] = OrderedDict()
        self.bytes = 0

    def get(self, row: list[int]):
        key = tuple(row)
        state = self.states.get(key)
        if state is not None:
            self.states.move_to_end(key)
        return state

    def keep(self, row: list[int], state) -> None:
        self.states[tuple(row)] = state
        self.bytes += tensor_bytes(state)
        while self.bytes > SHARED_STATES_BYTES and len(self.states) > 1:
            _, old = self.states.popitem(last=False)
            self.bytes -= tensor_bytes(old)


# (base, layers, frozen, dtype, device) -> the runs' SharedFrozenLayers; gone with the last run that holds it
_SHARED_FROZEN: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


@dataclass
class HeadOptions(AdapterOptions):
    learning_rate: float = 2e-4  # LoRA
    head_learning_rate: float = 1e-3
    warmup_ratio: float = 0.1
    epochs: float = 3.0
    max_tokens: int = 512
    inference_dtype: str = "auto"  # auto | float32 | bfloat16 (as for lora)
    finetune: str = "yes"  # yes: LoRA + head trained together; no: frozen backbone, logistic heads
    layers: int = 0  # decoder layers to run (the first N); 0: all
    train_layers: int = 0  # LoRA in the last N of them only; the frozen ones below read each issue once (0: all)
    C: float = 0.03  # frozen: inverse regularisation of each logistic regression (standardised features)

    def __post_init__(self) -> None:
        check_inference_dtype(self.inference_dtype)
        if self.finetune not in ("yes", "no"):
            raise ValueError(f'finetune must be "yes" or "no", got {self.finetune!r}')
        if self.epochs <= 0 or self.max_tokens < 8 or self.layers < 0 or self.train_layers < 0 or self.C <= 0:
            raise ValueError("epochs > 0, max_tokens >= 8, layers >= 0, train_layers >= 0 and C > 0 are required")
        if self.train_layers and self.finetune == "no":
            raise ValueError('train_layers chooses where LoRA goes: it needs finetune = "yes"')
        super().__post_init__()


def issue_ids(tokenizer, issue: Issue, max_tokens: int) -> list[int]:
    """Token ids of title + blank line + body, at most max_tokens: the body's tail goes first."""
    head = tokenizer(f"{issue.title}\n\n", add_special_tokens=True)["input_ids"][:max_tokens]
    body = tokenizer(issue.body or "", add_special_tokens=False)["input_ids"]
    return head + body[: max(0, max_tokens - len(head))]


def _normalised(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.clip(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12, None)


def make_head(hidden: int, labels: int):
    """LayerNorm, then one linear output per label: an LLM's pooled states run to large, uneven
    magnitudes, and normalising them keeps one learning rate right for any base model."""
    import torch

    return torch.nn.Sequential(torch.nn.LayerNorm(hidden), torch.nn.Linear(hidden, labels))


def load_backbone(path, layers: int):
    """The base model without its LM head (float32), cut to its first `layers` decoder layers (0: all)."""
    import torch
    from transformers import AutoModel

    backbone = AutoModel.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa")
    total = backbone.config.num_hidden_layers
    if layers > total:
        raise IssuelabError(f"[train.head] layers = {layers}, but the base model has {total} decoder layers")
    if layers and layers < total:
        backbone.layers = backbone.layers[:layers]
        backbone.config.num_hidden_layers = layers
        if getattr(backbone.config, "layer_types", None):
            backbone.config.layer_types = backbone.config.layer_types[:layers]
    return backbone


def layer_view(backbone, start: int, stop: int, final_norm: bool):
    """The backbone's decoder layers start..stop-1 as a model of their own, sharing their weights: it
    reads `inputs_embeds` as the hidden states entering layer `start` and ends in the final norm only
    if asked. transformers' own forward builds the masks and rotary embeddings of each layer's type."""
    import copy

    import torch

    view = copy.copy(backbone)
    view._modules = dict(backbone._modules)  # a module of its own: replacing its layers leaves the backbone's
    view.layers = torch.nn.ModuleList(list(backbone.layers)[start:stop])
    view.config = copy.copy(backbone.config)
    view.config.num_hidden_layers = stop - start
    view.config.use_cache = False  # a key/value cache is sized for the whole model's layers
    if getattr(backbone.config, "layer_types", None):
        view.config.layer_types = backbone.config.layer_types[start:stop]
    if not final_norm:
        view.norm = torch.nn.Identity()
    return view


def masked_mean(hidden, mask):
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def pad_batch(rows: list[list[int]], pad_id: int):
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for k, row in enumerate(rows):
        ids[k, : len(row)] = torch.tensor(row)
        mask[k, : len(row)] = 1
    return ids, mask


class HeadEngine(BaseEngine):
    name = "head"
    Options = HeadOptions
    generative = False

    def quick_to_fit(self, task: Task) -> bool:
        return False  # every fit reads every issue through the LLM

    def __init__(self, options: HeadOptions | None = None):
        self.options = options or HeadOptions()
        self.base = None  # llm.base_model.BaseModelInfo
        self.info: EngineInfo = {}
        self.shared: SharedFrozenLayers | None = None  # set when a loaded run shares its frozen layers
        # A trained (not loaded) run: the device whose matrix products run in bfloat16, in training and when it
        # answers in the process that trained it (a loaded run has its weights in the answering dtype instead)
        self.autocast: str | None = None

    def _pooled(self, ids, mask):
        """Mean of the last hidden states over the issue's tokens (float32)."""
        return masked_mean(self.backbone(input_ids=ids, attention_mask=mask).last_hidden_state.float(), mask)

    def _frozen_states(self, rows: list[list[int]], frozen: int) -> list:
        """Each issue's hidden states after the first `frozen` layers (one tensor per issue; bfloat16 where
        training autocasts, float32 otherwise). The
        last ones computed are kept: an ensemble's second seed of the same head on the same issues reuses them."""
        import torch
        from tqdm.auto import tqdm

        key = (str(self.base.path), frozen, self.device, self.autocast)
        if key in _LAST_FROZEN_STATES and _LAST_FROZEN_STATES[key][0] == rows:
            self.info["frozen_states_reused"] = True
            return _LAST_FROZEN_STATES[key][1]
        _LAST_FROZEN_STATES.clear()  # one set at a time
        bottom = layer_view(self.backbone.base_model.model, 0, frozen, final_norm=False).eval()
        if self.autocast:  # frozen for good: cast once, as a loaded run has them, not at every product
            bottom.to(torch.bfloat16)
        with torch.no_grad(), bfloat16_products(self.autocast):
            states = [bottom(input_ids=torch.tensor([row], device=self.device)).last_hidden_state[0]
                      for row in tqdm(rows, desc=f"head: reading issues through the {frozen} frozen layers", unit="issue", file=sys.stderr, disable=None)]  # fmt: skip
        if sum(map(tensor_bytes, states)) <= KEEP_FROZEN_STATES_BYTES:
            _LAST_FROZEN_STATES[key] = (rows, states)
        return states

    def _pooled_states(self, top, states: list):
        """Pooled output of the trained layers (`top`) given the frozen layers' states of a batch."""
        import torch

        width = max(len(s) for s in states)
        hidden = torch.zeros((len(states), width, states[0].shape[-1]), dtype=states[0].dtype, device=self.device)
        mask = torch.zeros((len(states), width), dtype=torch.long, device=self.device)
        for k, state in enumerate(states):
            hidden[k, : len(state)], mask[k, : len(state)] = state, 1
        return masked_mean(top(inputs_embeds=hidden, attention_mask=mask).last_hidden_state.float(), mask)

    def _pooled_rows(self, rows: list[list[int]]):
        if self.shared is not None:  # a loaded run above shared frozen layers
            return self._pooled_states(self.top, [self._shared_state(row) for row in rows])
        ids, mask = pad_batch(rows, self.pad_id)
        return self._pooled(ids.to(self.device), mask.to(self.device))

    def _shared_state(self, row: list[int]):
        """The issue's states after the shared frozen layers: computed by the first member that reads it."""
        import torch

        state = self.shared.get(row)
        if state is None:
            state = self.bottom(input_ids=torch.tensor([row], device=self.device)).last_hidden_state[0]
            self.shared.keep(row, state)
        return state

    def _share_frozen_layers(self, merged, frozen: int, dtype) -> None:
        """Lets this loaded run share its frozen layers (and their states) with the other runs of the
        process that froze the same ones: the LoRA of both sits above them, so their weights are the base model's."""
        key = (str(Path(self.base.path).resolve()), self.options.layers, frozen, str(dtype), self.device)
        shared = _SHARED_FROZEN.get(key)
        if shared is None:
            shared = _SHARED_FROZEN[key] = SharedFrozenLayers(merged.embed_tokens, list(merged.layers[:frozen]))
        else:
            merged.embed_tokens = shared.embeddings
            for k, layer in enumerate(shared.layers):
                merged.layers[k] = layer
        self.shared = shared
        self.bottom = layer_view(merged, 0, frozen, final_norm=False)
        self.top = layer_view(merged, frozen, len(merged.layers), final_norm=True)

    def _logits(self, rows: list[list[int]]):
        import torch

        pooled = self._pooled_rows(rows)  # float32
        with torch.autocast(self.device, enabled=False):  # the head in float32, as a loaded run has it
            return self.head(pooled)

    # -- training ------------------------------------------------------------------------------

    def fit(self, train: list[Issue], eval: list[Issue] | None, task: Task, seed: int = 0) -> None:
        require_lora_extra()
        import torch
        from peft import get_peft_model
        from transformers import AutoTokenizer

        opts = self.options
        torch.manual_seed(seed)
        self.info = {}
        self.labels = task.label_names
        self.multi_label = task.multi_label
        self.device = default_device()
        self.base = base = resolve_base_model(opts.base_model)
        self.tokenizer = AutoTokenizer.from_pretrained(base.path)
        self.pad_id = pad_token_id(self.tokenizer)
        backbone = load_backbone(base.path, opts.layers)
        if opts.finetune == "no":
            return self._fit_frozen(backbone, train, seed)
        run = len(backbone.layers)
        if opts.train_layers > run:
            raise IssuelabError(f"[train.head] train_layers = {opts.train_layers}, but only {run} decoder layers are run")
        frozen = run - opts.train_layers if opts.train_layers else 0
        adapter = lora_config(opts, layers_to_transform=list(range(frozen, run)), layers_pattern="layers") if frozen else lora_config(opts)
        self.backbone = get_peft_model(backbone, adapter).to(self.device)
        self.head = make_head(backbone.config.hidden_size, len(self.labels)).to(self.device)
        torch.nn.init.zeros_(self.head[1].weight)  # start from the label priors, not from noise

        started = time.perf_counter()
        # Matrix products in bfloat16 where the answering dtype is (CUDA, CPUs with AVX512-BF16/AMX); the LoRA
        # weights, the head and their updates stay float32.
        self.autocast = training_autocast(opts.inference_dtype, self.device)
        rows = [issue_ids(self.tokenizer, i, opts.max_tokens) for i in train]
        if frozen:  # the frozen layers' output never changes: computed once, the trained layers read it every epoch
            states, top = self._frozen_states(rows, frozen), layer_view(self.backbone.base_model.model, frozen, run, final_norm=True)
            self.info["frozen_pass_seconds"] = round(time.perf_counter() - started, 1)
            pooled_of = lambda batch: self._pooled_states(top, [states[i] for i in batch])  # noqa: E731
        else:
            pooled_of = lambda batch: self._pooled_rows([rows[i] for i in batch])  # noqa: E731
        targets = torch.from_numpy(gold_matrix(train, self.labels).astype(np.float32))
        with torch.no_grad():  # bias = log-odds of each label: the first steps are not spent learning priors
            prior = targets.mean(0).clamp(1e-3, 1 - 1e-3)
            self.head[1].bias.copy_(torch.log(prior / (1 - prior)) if self.multi_label else torch.log(prior))

        def loss_of(batch: list[int]):
            return self._loss(self.head(pooled_of(batch)), targets[batch].to(self.device))

        self.backbone.train()
        result = train_loop(
            [{"params": [p for p in self.backbone.parameters() if p.requires_grad], "lr": opts.learning_rate},
             {"params": self.head.parameters(), "lr": opts.head_learning_rate}],
            len(train), loss_of, seed=seed, steps=math.ceil(opts.epochs * math.ceil(len(train) / opts.batch_size)), batch_size=opts.batch_size,
            micro_batch_size=micro_batch(opts, self.device), weight_decay=opts.weight_decay, warmup_ratio=opts.warmup_ratio,
            autocast=self.autocast, eval_loss=(lambda: self._eval_loss(eval)) if eval else None,
            snapshot=self._trainable_state, restore=self._load_trainable_state, desc="head: training",
        )  # fmt: skip
        self.backbone.eval()
        seconds = time.perf_counter() - started
        if frozen:
            with torch.inference_mode(), bfloat16_products(self.autocast):
                pooled = np.concatenate([pooled_of([k]).float().cpu().numpy() for k in range(len(train))])
        else:
            pooled = self._all_pooled(train, progress="head: reading issues for explanations")
        self._keep_examples(train, pooled)
        self.info |= {
            "base_model": base.to_json(), "multi_label": self.multi_label, "finetuned": True, "steps": result.steps,
            "frozen_layers_cached": frozen, "autocast": self.autocast,
            "best_eval_loss": result.best_eval_loss, "train_seconds": round(seconds, 1),
            "seconds_per_example": round(seconds / max(1, result.steps * opts.batch_size), 3), "history": result.history,
        }  # fmt: skip

    def _fit_frozen(self, backbone, train: list[Issue], seed: int) -> None:
        started = time.perf_counter()
        self.backbone = backbone.to(self.device, inference_dtype(self.options.inference_dtype, self.device)).eval()
        features = self._all_pooled(train, progress="head: reading issues")
        self.mean, self.scale = features.mean(0), features.std(0) + 1e-6
        standardised = (features - self.mean) / self.scale
        self.coef, self.intercept = fit_logistic_heads(standardised, gold_matrix(train, self.labels), self.options.C, True, seed)
        self._keep_examples(train, features)
        seconds = time.perf_counter() - started
        self.info = {
            "base_model": self.base.to_json(), "multi_label": self.multi_label, "finetuned": False,
            "train_seconds": round(seconds, 1), "seconds_per_example": round(seconds / max(1, len(train)), 3),
        }  # fmt: skip

    def _keep_examples(self, issues: list[Issue], features: np.ndarray) -> None:
        """The training issues as the model reads them (pooled states less their mean, normalised, float16),
        with their labels and references: the similar labeled issues `explain` shows."""
        self.example_center = features.mean(axis=0).astype(np.float32) if len(features) else np.zeros(features.shape[1], np.float32)
        self.examples = _normalised(features - self.example_center).astype(np.float16)
        self.example_labels = gold_matrix(issues, self.labels)
        self.example_ids = np.array([issue_reference(issue) for issue in issues], dtype=str)

    def explain(self, issue: Issue, labels: list[str], names: list[str], top: int = 3) -> dict[str, list[str]]:
        """Per label, the training issues carrying it whose pooled states are closest to this issue's."""
        if not len(getattr(self, "examples", ())):
            return {label: [] for label in labels}
        similar = self.examples.astype(np.float32) @ _normalised(self._all_pooled([issue]) - self.example_center)[0]
        return {label: similar_labeled(similar, self.example_labels, self.example_ids, self.labels.index(label), top) for label in labels}

    def _loss(self, logits, y):
        return classification_loss(logits, y, self.multi_label)

    def _eval_loss(self, eval: list[Issue]) -> float:
        import torch

        targets = torch.from_numpy(gold_matrix(eval, self.labels).astype(np.float32))
        logits = torch.from_numpy(self._all_logits(eval))
        self.backbone.train()
        return self._loss(logits, targets).item()

    def _trainable_state(self) -> dict:
        backbone = {k: v.detach().cpu().clone() for k, v in self.backbone.state_dict().items() if "lora_" in k}
        return {"backbone": backbone, "head": {k: v.detach().cpu().clone() for k, v in self.head.state_dict().items()}}

    def _load_trainable_state(self, state: dict) -> None:
        self.backbone.load_state_dict(state["backbone"], strict=False)
        self.head.load_state_dict(state["head"])

    # -- inference -----------------------------------------------------------------------------

    def _batched(self, issues: list[Issue], forward, progress: str | None = None) -> list[np.ndarray]:
        """forward(rows) on one issue at a time on CPU (no padding work), batches of 8 on a GPU."""
        import torch
        from tqdm.auto import tqdm

        self.backbone.eval()
        step = 8 if self.device == "cuda" else 1
        rows = [issue_ids(self.tokenizer, i, self.options.max_tokens) for i in issues]
        out = []
        with torch.inference_mode(), bfloat16_products(self.autocast):
            for start in tqdm(range(0, len(rows), step), desc=progress, unit="batch", file=sys.stderr,
                              disable=True if progress is None else None):  # fmt: skip
                out.append(forward(rows[start : start + step]).float().cpu().numpy())
        return out

    def _all_pooled(self, issues: list[Issue], progress: str | None = None) -> np.ndarray:
        out = self._batched(issues, self._pooled_rows, progress)
        return np.concatenate(out) if out else np.zeros((0, self.backbone.config.hidden_size), dtype=np.float32)

    def _all_logits(self, issues: list[Issue]) -> np.ndarray:
        if not self.finetuned:
            features = (self._all_pooled(issues).astype(np.float64) - self.mean) / self.scale
            return features @ self.coef.T + self.intercept
        out = self._batched(issues, self._logits)
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)), dtype=np.float32)

    @property
    def finetuned(self) -> bool:
        return self.options.finetune == "yes"

    def predict_scores(self, issues: list[Issue]) -> np.ndarray:
        # Frozen heads are one logistic regression per label: sigmoids, as for tfidf.
        return probabilities(self._all_logits(list(issues)), softmax=self.finetuned and not self.multi_label)

    def shared_files(self) -> list[Path]:
        return [self.base.path] if self.base else []  # the base model, from the model cache

    # -- persistence ---------------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        from safetensors.numpy import save_file

        directory.mkdir(parents=True, exist_ok=True)
        if self.finetuned:
            self.backbone.save_pretrained(directory / "adapter")  # adapter_model.safetensors + adapter_config.json
            weights = {k: v.detach().float().cpu().numpy() for k, v in self.head.state_dict().items()}
        else:
            weights = {"mean": self.mean, "scale": self.scale, "coef": self.coef, "intercept": self.intercept}
        save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in weights.items()}, directory / "head.safetensors")
        np.savez(directory / "examples.npz", examples=self.examples, labels=self.example_labels, ids=self.example_ids, center=self.example_center)
        write_json(directory / "engine.json",
                   {"options": asdict(self.options), "labels": self.labels, "multi_label": self.multi_label, "info": self.info})  # fmt: skip

    @classmethod
    def load(cls, directory: Path, device: str | None = None) -> HeadEngine:
        require_lora_extra()
        import torch
        from peft import PeftModel
        from safetensors.numpy import load_file
        from transformers import AutoTokenizer

        state = json.loads((directory / "engine.json").read_text(encoding="utf-8"))
        options = options_from_json(HeadOptions, state["options"])
        engine = cls(options)
        engine.labels, engine.multi_label, engine.info = state["labels"], state["multi_label"], state["info"]
        engine.device = device or default_device()
        engine.base = base = resolve_base_model(options.base_model)
        engine.tokenizer = AutoTokenizer.from_pretrained(base.path)
        engine.pad_id = pad_token_id(engine.tokenizer)
        backbone = load_backbone(base.path, options.layers)
        weights = load_file(directory / "head.safetensors")
        dtype = inference_dtype(options.inference_dtype, engine.device)
        if (directory / "examples.npz").exists():  # runs written before explanations have none
            with np.load(directory / "examples.npz", allow_pickle=False) as examples:
                engine.examples, engine.example_labels = examples["examples"], examples["labels"].astype(bool)
                engine.example_ids, engine.example_center = examples["ids"], examples["center"]
        if not engine.finetuned:
            engine.backbone = backbone.to(engine.device, dtype).eval()
            engine.mean, engine.scale = weights["mean"].astype(np.float64), weights["scale"].astype(np.float64)
            engine.coef, engine.intercept = weights["coef"].astype(np.float64), weights["intercept"].astype(np.float64)
            return engine
        # Merged in float32, then cast: answering costs what the base model's prefill costs.
        merged = PeftModel.from_pretrained(backbone, directory / "adapter").merge_and_unload()
        if engine.info.get("frozen_layers_cached"):  # LoRA in the top layers only: the ones below can be shared
            engine._share_frozen_layers(merged, engine.info["frozen_layers_cached"], dtype)
        engine.backbone = merged.to(engine.device, dtype).eval()
        engine.head = make_head(*weights["1.weight"].shape[::-1])
        engine.head.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
        engine.head.to(engine.device)
        return engine

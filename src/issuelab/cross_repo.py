"""One encoder for many label sets: a sentence encoder fine-tuned on the labeled issues of several
repositories, so that it matches an issue to the right "name + description" of label sets it never saw.

Training is a bi-encoder: each step takes a batch of issues of one repository and all that repository's
label texts (as `fewshot` reads them: name, blank line, description), scores every pair by scaled cosine
similarity, and minimises the cross-entropy of the softmax over that repository's labels against the
issue's labels (an issue with two labels puts half the target on each). Batches never mix repositories,
so the model learns to rank label texts, not to memorise one label set. The result is an ordinary
encoder directory (safetensors) that `fewshot` (and `embed`) take as `model = "DIRECTORY"`, with
`issuelab-encoder.json` saying what it was trained on.

The report also carries a zero-shot calibration learned across the training repositories: the share of its
even softmax share (1 / labels) that a label needs before `fewshot` applies it to an issue of a repository
with no labeled issue (`zero_shot_share`). It is the share with the best micro F1 on the training sets that
are multi-label, scored as `fewshot` scores them (centred, description softmax, at most 3 labels and at least
1); none where every set is single-label (the top label is taken there, whatever the share).
"""

from __future__ import annotations

import math
import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .data import Issue, Label, write_json
from .engines import Task
from .engines.embed import EmbedEngine, EmbedOptions, document
from .engines.linear_heads import probabilities as softmax_probabilities
from .errors import DataError, IssuelabError
from .llm.base_model import INFERENCE_DTYPES, inference_dtype, training_autocast
from .llm.pypi_models import MINILM, encoder_path
from .metrics import gold_matrix, micro_f1
from .policy import label_matrix

REPORT_FILE = "issuelab-encoder.json"
ZERO_SHOT_SHARES = (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0)  # the calibration's candidates
CALIBRATION_ISSUES = 1000  # per set at most (drawn): the calibration costs a forward pass over them
DESCRIPTION_TEMPERATURE = 0.05  # fewshot's default for its description softmax (1 / the training scale below)


@dataclass
class LabeledSet:
    """One repository's labeled issues and its label set (names and descriptions)."""

    name: str
    labels: tuple[Label, ...]
    issues: list[Issue]


@dataclass
class EncoderTrainingOptions:
    base: str = MINILM  # the encoder to start from: all-MiniLM-L6-v2, all-mpnet-base-v2 or a directory
    epochs: float = 1.0  # passes over the pooled issues of all sets
    max_steps: int = 0  # a cap on optimizer steps (0: none), to bound CPU time
    batch_size: int = 16
    max_tokens: int = 128  # an issue's title and the start of its body; label texts are shorter
    learning_rate: float = 3e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    scale: float = 20.0  # cosine similarities times this are the logits
    seed: int = 0
    # auto: matrix products in bfloat16 where the CPU (or GPU) has it fast, the weights float32 (1.7x faster a
    # step on a CPU with AVX512-BF16); float32: everything in float32
    dtype: str = "auto"
    dropout: bool = True  # the encoder's own dropout while it trains (off: a MiniLM step costs about 20% less CPU)

    def __post_init__(self) -> None:
        if self.dtype not in INFERENCE_DTYPES:
            raise ValueError(f"dtype must be auto, float32 or bfloat16, not {self.dtype!r}")
        if self.epochs <= 0 or self.batch_size < 1 or self.max_tokens < 8 or self.max_steps < 0 or self.learning_rate <= 0:
            raise ValueError("epochs > 0, batch_size >= 1, max_tokens >= 8, max_steps >= 0 and learning_rate > 0 are required")


def usable(labeled: LabeledSet) -> LabeledSet:
    """The set's issues that carry one of its labels (labels outside the set dropped); an error where
    nothing could be learned from it."""
    names = {label.name for label in labeled.labels}
    if len(names) < 2:
        raise DataError(f"{labeled.name}: a label set needs at least two labels to train on (it has {len(names)})")
    issues = []
    for issue in labeled.issues:
        kept = [label for label in issue.labels if label in names]
        if kept:
            issues.append(Issue(issue.id, issue.title, issue.body, kept, issue.extra))
    if not issues:
        raise DataError(f"{labeled.name}: no issue carries one of its labels ({', '.join(sorted(names))})")
    return LabeledSet(labeled.name, labeled.labels, issues)


def is_multi_label(labeled: LabeledSet) -> bool:
    """Whether some issue of the set carries two of its labels."""
    names = {label.name for label in labeled.labels}
    return any(len(names.intersection(issue.labels)) > 1 for issue in labeled.issues)


def choose_zero_shot_share(probabilities: list[np.ndarray], golds: list[np.ndarray], max_labels: int = 3) -> tuple[float, dict[str, float]]:
    """The candidate share with the best mean micro F1 over the sets (each an (issues, labels) description
    softmax and its gold matrix), labels applied as `fewshot` with no labeled issue applies them: those at
    or above share / labels, at most `max_labels`, the top one always. Returns it and every candidate's F1."""
    table = {}
    for share in ZERO_SHOT_SHARES:
        chosen = [label_matrix(p, min(1.0, share / p.shape[1]), True, 1, max_labels) for p in probabilities]
        table[str(share)] = round(float(np.mean([micro_f1(c, g) for c, g in zip(chosen, golds)])), 4)
    best = max(ZERO_SHOT_SHARES, key=lambda share: table[str(share)])  # the first of equals: the smaller share
    return best, table


def calibrate_zero_shot(encoder: EmbedEngine, sets: list[LabeledSet], seed: int = 0) -> dict:
    """`zero_shot_share` (none without a multi-label set) and its candidates' F1, with `encoder` (loaded)."""
    probabilities, golds = [], []
    for labeled in filter(is_multi_label, sets):
        issues = labeled.issues if len(labeled.issues) <= CALIBRATION_ISSUES else random.Random(seed).sample(labeled.issues, CALIBRATION_ISSUES)
        vectors = encoder._embed_texts([document(issue) for issue in issues])
        vectors -= vectors.mean(axis=0)  # as fewshot answers: the repository's mean taken out
        vectors /= np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
        label_vectors = encoder._embed_texts([document(issue) for issue in Task(tuple(labeled.labels), multi_label=True).label_issues()])
        probabilities.append(softmax_probabilities(vectors @ label_vectors.T / DESCRIPTION_TEMPERATURE, softmax=True))
        golds.append(gold_matrix(issues, [label.name for label in labeled.labels]))
    if not probabilities:
        return {"zero_shot_share": None, "zero_shot_calibration": {}}
    share, table = choose_zero_shot_share(probabilities, golds)
    return {"zero_shot_share": share, "zero_shot_calibration": table}


def train_encoder(sets: list[LabeledSet], out_dir: str | Path, options: EncoderTrainingOptions | None = None, *, force: bool = False,
                  save_dtype: str = "float32", calibrate: bool = True) -> dict:  # fmt: skip
    """Fine-tunes `options.base` on `sets` and writes the encoder to `out_dir` (staged beside it, then
    renamed: an interrupted run leaves no half-written encoder). Returns the report it also writes.
    `save_dtype` ("float32", "bfloat16" or "auto", as inference_dtype): the weights as written; an encoder
    that will only answer (fewshot's adapted one) can be kept in its answering dtype, half the bytes in bfloat16.
    `calibrate`: learn the zero-shot share on the sets (see the module's docstring)."""
    import torch

    from .engines.torch_loop import train_loop

    opts = options or EncoderTrainingOptions()
    if save_dtype not in INFERENCE_DTYPES:
        raise ValueError(f"save_dtype must be auto, float32 or bfloat16, not {save_dtype!r}")
    out = Path(out_dir)
    if out.exists() and not force:
        raise IssuelabError(f"{out} already exists: choose another --out or pass --force to replace it")
    if not sets:
        raise DataError("no labeled sets to train on: give at least one (two or more to generalise across label sets)")
    sets = [usable(s) for s in sets]
    torch.manual_seed(opts.seed)
    encoder = EmbedEngine(EmbedOptions(model=opts.base, max_tokens=opts.max_tokens, finetune="yes"))
    encoder._load_encoder(encoder_path(opts.base))
    label_texts = [[document(issue) for issue in Task(tuple(s.labels), multi_label=True).label_issues()] for s in sets]
    golds = [torch.from_numpy(gold_matrix(s.issues, [label.name for label in s.labels]).astype(np.float32)) for s in sets]
    # One batch = issues of one set; the loop draws whole batches, so each "example" below is a batch.
    batches = []
    for k, labeled in enumerate(sets):
        order = list(range(len(labeled.issues)))
        random.Random(opts.seed + k).shuffle(order)
        batches += [(k, order[start : start + opts.batch_size]) for start in range(0, len(order), opts.batch_size)]
    steps = max(1, math.ceil(len(batches) * opts.epochs))
    steps = min(steps, opts.max_steps) if opts.max_steps else steps

    def loss_of(batch: list[int]):
        k, rows = batches[batch[0]]
        issues = encoder._embed([document(sets[k].issues[i]) for i in rows])
        labels = encoder._embed(label_texts[k])
        with torch.autocast(encoder.device, enabled=False):  # the similarities in float32: bfloat16 rounds cosines at 1e-2
            log_probs = torch.log_softmax(opts.scale * issues.float() @ labels.float().T, dim=1)
        target = golds[k][rows].to(log_probs.device)
        return -((log_probs * target).sum(1) / target.sum(1)).mean()

    started = time.perf_counter()
    encoder.encoder.train(opts.dropout)  # eval mode: dropout off, all that train mode switches on in a BERT-family encoder
    result = train_loop(
        [{"params": encoder.encoder.parameters(), "lr": opts.learning_rate}], len(batches), loss_of, seed=opts.seed,
        steps=steps, batch_size=1, weight_decay=opts.weight_decay, warmup_ratio=opts.warmup_ratio, warmup_offset=1,
        autocast=training_autocast(opts.dtype, encoder.device), desc="train-encoder",
    )  # fmt: skip
    encoder.encoder.eval()
    calibration = calibrate_zero_shot(encoder, sets, opts.seed) if calibrate else {}
    saved_dtype = inference_dtype(save_dtype, encoder.device)
    encoder.encoder.to(saved_dtype)
    losses = [h["train_loss"] for h in result.history]
    tail = max(1, len(losses) // 10)
    report = {
        "base": opts.base,
        "options": asdict(opts),
        "saved_dtype": str(saved_dtype).removeprefix("torch."),
        "sets": [{"name": s.name, "issues": len(s.issues), "labels": [label.name for label in s.labels]} for s in sets],
        "steps": result.steps,
        "train_seconds": round(time.perf_counter() - started, 1),
        "loss_first_tenth": round(float(np.mean(losses[:tail])), 4),
        "loss_last_tenth": round(float(np.mean(losses[-tail:])), 4),
        **calibration,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        encoder.encoder.save_pretrained(staging, safe_serialization=True)
        encoder.tokenizer.save_pretrained(staging)
        write_json(staging / REPORT_FILE, report)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report

"""`fewshot`: labels from their names and descriptions, and from however few labeled issues there are.

One frozen sentence encoder (all-MiniLM-L6-v2 by default, or any encoder directory) embeds the issues
and each label's "name + description". Every label is scored two ways:
- description: the issue's similarity to the label's text, as a softmax over the labels (temperature
  `temperature`): it needs no labeled issue at all;
- examples: a linear probe, one class-balanced logistic regression per label (`C`) on the embeddings of
  the labeled issues, with each label's text as one more example of it, its logits as a softmax over the
  labels that have labeled issues.
A label with n labeled issues blends them as n / (n + prior) of its examples score and prior / (n + prior)
of its description score: a label without examples (or added to the config later) is scored from its
description alone, and leans on its examples as they arrive. The probe replaced the similarity-weighted
votes of the nearest labeled issues and the similarity to each label's mean issue: with 1 to 20 labeled
issues per label, the ensemble with tfidf scored higher on every set measured (docs/benchmarks.md, "The
few-shot scores from a linear probe").

Issues are compared after the mean of the repository's issues (the training issues and the task's
unlabeled ones: `issuelab train --unlabeled`) is taken out of their embeddings (`center`): what every
issue of a repository shares (its name, its jargon) says nothing about which label fits, and left in it
draws every issue to the label whose description sounds most like the project (measured zero-shot,
top label: sklearn micro-F1 0.18 -> 0.29, huggingface/datasets 0.08 -> 0.25, NLBSE'24 react macro-F1
0.49 -> 0.58).

Training is embedding: no gradient, seconds for a few hundred issues, and zero issues are allowed.
A label without labeled issues has no threshold to tune: it takes the score that all but
`unseen_false_positive_rate` of the training issues (none of which carries it) stay below; with no
labeled issue at all, a label is applied when it takes `zero_shot_share` times its even share
(1 / labels) of the description softmax (and with the policy's `min_labels`, the top label always is):
the share an encoder from `issuelab train-encoder` was calibrated with across its repositories, else 2.
The other labels' thresholds are chosen out of fold as for any quick engine. The run keeps the label and
issue embeddings and the probe (npz) and the options; the encoder is loaded from where it is installed.

`adapt_epochs` > 0 first fine-tunes the encoder on the labeled issues against the repository's own label
texts (the bi-encoder recipe of `issuelab train-encoder`, on one repository) and reads every issue with
the adapted encoder, which the run then holds (`encoder/`, safetensors). It is adapted once, on all the
training issues: the out-of-fold refits share it and refit the probe only, so their scores come from an
encoder that saw the held-out fold's labels (five adaptations would cost five times what one takes, and
scored lower with tfidf on two of three multi-label sets at k = 5: docs/benchmarks.md). Those scores look
better than held-out ones will (`optimistic_out_of_fold`): an ensemble does not weight it up on them.
Its matrix products run in bfloat16 where the CPU has it fast (`inference_dtype`), its weights in
float32: 1.9x less CPU for the same scores. It trains without the encoder's dropout (`adapt_dropout`): on a
CPU, drawing the dropout masks (over every attention map too) costs a fifth of a MiniLM step, and one epoch
over a few hundred issues scored the same without them.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import weakref
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from ..cross_repo import DESCRIPTION_TEMPERATURE, REPORT_FILE, EncoderTrainingOptions, LabeledSet, train_encoder
from ..data import Issue, issue_reference, write_json
from ..llm.pypi_models import MINILM, encoder_path
from ..metrics import gold_matrix
from ..options import options_from_json
from . import BaseEngine, EngineInfo, Task, similar_labeled
from .embed import EmbedEngine, EmbedOptions, forget_encoder
from .folds import out_of_fold_scores
from .linear_heads import fit_logistic_heads, probabilities


@dataclass
class FewshotOptions:
    model: str = MINILM  # all-MiniLM-L6-v2 (bundled), all-mpnet-base-v2 (extra embed-mpnet), or an encoder directory
    max_tokens: int = 0  # 0: the length its encoder was trained at (issuelab-encoder.json), else 256
    temperature: float = DESCRIPTION_TEMPERATURE  # of the description softmax over labels (scores are cosines)
    C: float = 10.0  # inverse regularisation of the probe's logistic regressions
    prior: float = 4.0  # a label's description weighs as much as this many labeled issues
    # no labeled issues: a label needs this many times its even share (0: the encoder's calibration, else 2)
    zero_shot_share: float = 0.0
    unseen_false_positive_rate: float = 0.05  # a label no training issue carries: its threshold lets this share of them through
    center: bool = True  # take the mean of the repository's issues out of each issue's embedding
    # > 0: fine-tune the encoder on the labeled issues against the label texts first (0: the encoder as it is).
    # One epoch at 1e-4 matched three at 3e-5 on the multi-label sets for 40% of the CPU (docs/benchmarks.md)
    adapt_epochs: float = 1.0
    adapt_learning_rate: float = 1e-4  # of that fine-tune
    # The encoder's dropout during that fine-tune. Off: about a tenth less training CPU (5-17% measured) for the
    # same scores: +0.001 micro F1 over the 45 multi-label folds, +0.004 on NLBSE'24 (docs/benchmarks.md)
    adapt_dropout: bool = False
    inference_dtype: str = "auto"  # as for embed; also the adaptation's matrix products (auto: bfloat16 where fast)

    def __post_init__(self) -> None:
        if self.temperature <= 0 or self.C <= 0 or self.prior < 0 or self.zero_shot_share < 0 or 0 != self.max_tokens < 8:
            raise ValueError("temperature > 0, C > 0, prior >= 0, zero_shot_share >= 0 and max_tokens 0 or >= 8 are required")
        if self.adapt_epochs < 0 or self.adapt_learning_rate <= 0:
            raise ValueError("adapt_epochs must be 0 (the encoder as it is) or more, adapt_learning_rate above 0")
        if not 0 < self.unseen_false_positive_rate < 1:
            raise ValueError("unseen_false_positive_rate must be between 0 and 1")


DEFAULT_MAX_TOKENS = 256
DEFAULT_ZERO_SHOT_SHARE = 2.0  # an encoder without a calibration (the stock ones)
ADAPTED_ENCODER = "encoder"  # the run's folder for an adapted encoder
ADAPT_MAX_STEPS = 400  # of 16 issues: about 10 minutes on 2 CPU cores; a large history gets fewer epochs


def encoder_report(model: str) -> dict:
    """What `issuelab train-encoder` wrote beside an encoder (empty for the stock encoders)."""
    report = encoder_path(model) / REPORT_FILE
    return json.loads(report.read_text(encoding="utf-8")) if report.is_file() else {}


def softmax(logits: np.ndarray) -> np.ndarray:
    return probabilities(logits, softmax=True)


class FewshotEngine(BaseEngine):
    name = "fewshot"
    Options = FewshotOptions
    generative = False
    trains_on_nothing = True  # `issuelab train` accepts an empty training set for it

    def __init__(self, options: FewshotOptions | None = None):
        self.options = options or FewshotOptions()
        self.info: EngineInfo = {}
        self.adapted: Path | None = None  # the encoder fine-tuned on this run's labeled issues, if any

    def _encoder(self) -> EmbedEngine:
        opts = self.options
        model = str(self.adapted) if self.adapted else opts.model
        encoder = EmbedEngine(EmbedOptions(model=model, max_tokens=opts.max_tokens, finetune="no", inference_dtype=opts.inference_dtype))
        encoder.load_frozen()
        return encoder

    def _resolve_from_encoder(self) -> None:
        """max_tokens = 0: the length the encoder was trained at (an adapted one: the adaptation's);
        zero_shot_share = 0: the encoder's calibration. Saved resolved, so the run keeps them whatever
        becomes of the encoder's report. Read at the length they were trained at (128), the leave-one-out
        encoders of docs/benchmarks.md gave the ensemble with tfidf higher scores on every multi-label set
        than at 256. An encoder without a calibration (trained on single-label sets only, or before it existed) gets 2."""
        if self.options.max_tokens and self.options.zero_shot_share:
            return
        report = encoder_report(self.options.model)
        if not self.options.max_tokens:
            trained = EncoderTrainingOptions.max_tokens if self.options.adapt_epochs else DEFAULT_MAX_TOKENS
            self.options = replace(self.options, max_tokens=report.get("options", {}).get("max_tokens") or trained)
        if not self.options.zero_shot_share:
            self.options = replace(self.options, zero_shot_share=report.get("zero_shot_share") or DEFAULT_ZERO_SHOT_SHARE)

    def _adapts(self, train: list[Issue], task: Task) -> bool:
        """Whether there is something to adapt to: two labels or more, and a training issue carrying one
        (what `cross_repo.usable` asks of a set; checked here so that such a run just skips adapting)."""
        names = set(task.label_names)
        return bool(self.options.adapt_epochs) and len(names) >= 2 and any(names.intersection(issue.labels) for issue in train)

    def _adapt(self, train: list[Issue], task: Task, seed: int) -> None:
        """Fine-tunes the encoder on `train` against the task's label texts, into a folder that lives as
        long as this engine (the run copies it when saved)."""
        self._resolve_from_encoder()
        folder = tempfile.TemporaryDirectory(prefix="issuelab-fewshot-encoder-")
        self.adapted = Path(folder.name) / ADAPTED_ENCODER
        opts = self.options
        options = EncoderTrainingOptions(base=opts.model, epochs=opts.adapt_epochs, max_steps=ADAPT_MAX_STEPS, max_tokens=opts.max_tokens,
                                         learning_rate=opts.adapt_learning_rate, seed=seed, dtype=opts.inference_dtype,
                                         dropout=opts.adapt_dropout)  # fmt: skip
        # It only answers from now on: kept in the answering dtype (bfloat16 where the CPU has it: half the run)
        report = train_encoder([LabeledSet("the training issues", task.labels, list(train))], self.adapted, options, force=True,
                               save_dtype=opts.inference_dtype, calibrate=False)  # fmt: skip
        self._keep = folder  # deleted with the engine, and the process forgets the encoder then
        weakref.finalize(self, forget_encoder, self.adapted)  # the frozen caches key a directory by its path
        self.info["adapted_encoder"] = {key: report[key] for key in ("steps", "train_seconds", "loss_first_tenth", "loss_last_tenth")}

    def fit_out_of_fold(self, train: list[Issue], task: Task, seed: int, folds: int) -> np.ndarray:
        """As for any quick engine; an adapting one adapts its encoder once, on all of `train`, and the
        folds refit the probe on it (see the module's docstring)."""
        if not self._adapts(train, task):
            return super().fit_out_of_fold(train, task, seed, folds)
        self._adapt(train, task, seed)
        self.optimistic_out_of_fold = True  # the folds' encoder saw their labels
        on_adapted = replace(self.options, model=str(self.adapted), adapt_epochs=0.0)
        scores = out_of_fold_scores(lambda: FewshotEngine(on_adapted), train, task, seed, folds)
        self.fit(train, None, task, seed)
        return scores

    def fit(self, train: list[Issue], eval: list[Issue] | None, task: Task, seed: int = 0) -> None:
        started = time.perf_counter()
        self.labels, self.multi_label = task.label_names, task.multi_label
        self._resolve_from_encoder()
        if self.adapted is None and self._adapts(train, task):
            self._adapt(train, task, seed)
        self.encoder = self._encoder()
        self.label_vectors = self.encoder.embed(task.label_issues())  # a label as the encoder reads it: name, description
        embedded = self.encoder.embed(list(train) + list(task.unlabeled))  # the training issues first
        self.center = embedded.mean(axis=0) if self.options.center and len(embedded) else np.zeros(self.label_vectors.shape[1], np.float32)
        self.examples = self._centred(embedded[: len(train)])
        self.example_labels = gold_matrix(train, self.labels) if train else np.zeros((0, len(self.labels)), bool)
        self.example_ids = np.array([issue_reference(issue) for issue in train], dtype=str)
        self._prepare()
        self._fit_probe(seed)
        self.info.update(max_tokens=self.options.max_tokens, examples=len(train), unlabeled_issues=len(task.unlabeled), labels_without_examples=self.labels_without_examples(),
                         train_seconds=round(time.perf_counter() - started, 1))  # fmt: skip

    def _centred(self, vectors: np.ndarray) -> np.ndarray:
        """Embeddings less the repository's mean, renormalised (as they are without `center`)."""
        vectors = vectors.astype(np.float32) - self.center
        return vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)

    def description_thresholds(self) -> dict[str, float]:
        """Thresholds of the labels scored from their description alone (no training issue carries them).
        Their score on the training issues, none of which carries them, is what a wrong match looks like:
        the threshold is its (1 - `unseen_false_positive_rate`) quantile. With no training issue at all,
        a label needs `zero_shot_share` times its even share of the description softmax."""
        unseen = self.labels_without_examples()
        if not len(self.examples):
            return {name: min(1.0, self.options.zero_shot_share / len(self.labels)) for name in unseen}
        description = softmax((self.examples @ self.label_vectors.T) / self.options.temperature)
        quantile = 1 - self.options.unseen_false_positive_rate
        return {name: round(float(np.quantile(description[:, self.labels.index(name)], quantile)), 5) for name in unseen}

    def labels_without_examples(self) -> list[str]:
        return [name for name, count in zip(self.labels, self.counts) if count == 0]

    def _prepare(self) -> None:
        """What every answer needs and the examples alone decide: counts and blend shares."""
        self.counts = self.example_labels.sum(axis=0).astype(np.float32)
        prior = self.options.prior
        self.share = self.counts / (self.counts + prior) if prior else (self.counts > 0).astype(np.float32)

    def _fit_probe(self, seed: int) -> None:
        """The examples' logistic regressions; each label's text (centred as the issues are) is one more
        example of its label, so that a label with one labeled issue is not that issue's words alone."""
        labels = len(self.labels)
        self.probe_coef, self.probe_intercept = np.zeros((labels, self.label_vectors.shape[1]), np.float32), np.zeros(labels, np.float32)
        if len(self.examples):
            X = np.concatenate([self.examples, self._centred(self.label_vectors)])
            gold = np.concatenate([self.example_labels, np.eye(labels, dtype=bool)])
            self.probe_coef, self.probe_intercept = fit_logistic_heads(X, gold, self.options.C, True, seed)

    def predict_scores(self, issues: list[Issue]) -> np.ndarray:
        opts = self.options
        X = self._centred(self.encoder.embed(list(issues)))
        description = softmax((X @ self.label_vectors.T) / opts.temperature)
        if not len(self.examples):
            return description
        examples = softmax(np.where(self.counts > 0, X @ self.probe_coef.T + self.probe_intercept, -np.inf))
        return self.share * examples + (1 - self.share) * description

    def explain(self, issue: Issue, labels: list[str], names: list[str], top: int = 3) -> dict[str, list[str]]:
        """Per label, how close the issue is to the label's description, and its most similar labeled
        issues that carry the label (with their similarity)."""
        x = self._centred(self.encoder.embed([issue]))[0]
        similar = self.examples @ x if len(self.examples) else np.zeros(0)
        return {label: [f"description: similarity {float(x @ self.label_vectors[k]):.2f}",
                        *similar_labeled(similar, self.example_labels, self.example_ids, k, top)]
                for label, k in ((label, self.labels.index(label)) for label in labels)}  # fmt: skip

    def shared_files(self) -> list[Path]:
        return [] if self.adapted else [encoder_path(self.options.model)]

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        if self.adapted and self.adapted != directory / ADAPTED_ENCODER:
            shutil.copytree(self.adapted, directory / ADAPTED_ENCODER, dirs_exist_ok=True)
        np.savez(directory / "vectors.npz", labels=self.label_vectors, examples=self.examples, example_labels=self.example_labels, center=self.center,
                 example_ids=self.example_ids, probe_coef=self.probe_coef, probe_intercept=self.probe_intercept)  # fmt: skip
        write_json(directory / "engine.json", {"options": asdict(self.options), "labels": self.labels, "multi_label": self.multi_label,
                                               "adapted_encoder": bool(self.adapted), "info": self.info})  # fmt: skip

    @classmethod
    def load(cls, directory: Path) -> FewshotEngine:
        state = json.loads((directory / "engine.json").read_text(encoding="utf-8"))
        if "neighbours" in state["options"]:  # scored by neighbour votes and prototypes: its thresholds fit those scores
            raise ValueError("trained by an earlier fewshot (neighbour votes, not the linear probe)")
        engine = cls(options_from_json(FewshotOptions, state["options"]))
        engine.labels, engine.multi_label, engine.info = state["labels"], state["multi_label"], state["info"]
        if state.get("adapted_encoder"):
            engine.adapted = directory / ADAPTED_ENCODER
        with np.load(directory / "vectors.npz", allow_pickle=False) as vectors:
            engine.label_vectors, engine.examples = vectors["labels"], vectors["examples"]
            engine.example_labels = vectors["example_labels"].astype(bool)
            engine.center, engine.example_ids = vectors["center"], vectors["example_ids"]  # every run with a probe has them
            engine.probe_coef, engine.probe_intercept = vectors["probe_coef"], vectors["probe_intercept"]
        engine._prepare()
        engine.encoder = engine._encoder()
        return engine

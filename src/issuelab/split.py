"""Seeded multi-label iterative stratification (Sechidis, Tsoumakas & Vlahavas, 2011).

Rare labels are placed first, each example going to the subset that most lacks its label, so
every subset gets its share of every label, which a random split does not give small data sets.
Same seed, same input: same split, byte for byte.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from .data import Issue, file_sha256, write_json, write_jsonl
from .errors import DataError

SPLIT_NAMES = ("train", "eval", "test")


def stratify(label_sets: Sequence[Sequence[str]], ratios: Sequence[float], seed: int) -> list[int]:
    """Returns, for each example, the index of the subset it goes to."""
    rng = random.Random(seed)
    n = len(label_sets)
    total = sum(ratios)
    ratios = [r / total for r in ratios]
    desired = _integer_sizes(ratios, n)
    label_counts = Counter(label for labels in label_sets for label in set(labels))
    desired_per_label = {label: [r * count for r in ratios] for label, count in sorted(label_counts.items())}
    order = list(range(n))
    rng.shuffle(order)
    assignment = [-1] * n
    remaining = dict(sorted(label_counts.items()))

    def choose(scores: Sequence[tuple[float, float]]) -> int:
        # Subsets already full are passed over while another has room: sizes stay within one of the ratios.
        open_ = [s for s in range(len(scores)) if desired[s] > 0] or list(range(len(scores)))
        best = max(scores[s] for s in open_)
        return rng.choice([s for s in open_ if scores[s] == best])

    def assign(i: int, subset: int) -> None:
        assignment[i] = subset
        desired[subset] -= 1
        for label in set(label_sets[i]):
            desired_per_label[label][subset] -= 1
            remaining[label] -= 1

    while any(remaining.values()):
        label = min((count, name) for name, count in remaining.items() if count > 0)[1]
        for i in order:
            if assignment[i] == -1 and label in label_sets[i]:
                want = desired_per_label[label]
                assign(i, choose([(want[s], desired[s]) for s in range(len(ratios))]))
    for i in order:  # examples without labels
        if assignment[i] == -1:
            assign(i, choose([(desired[s], 0.0) for s in range(len(ratios))]))
    return assignment


def _integer_sizes(ratios: Sequence[float], n: int) -> list[float]:
    """Subset sizes summing to n, by largest remainder (ties to the earlier subset)."""
    exact = [r * n for r in ratios]
    sizes = [int(x) for x in exact]
    by_remainder = sorted(range(len(ratios)), key=lambda s: (-(exact[s] - sizes[s]), s))
    for s in by_remainder[: n - sum(sizes)]:
        sizes[s] += 1
    return [float(size) for size in sizes]


def split_issues(issues: Sequence[Issue], ratios: Sequence[float], seed: int) -> list[list[Issue]]:
    """Stratified subsets, each in the input's order."""
    if any(r < 0 for r in ratios) or sum(ratios) <= 0:
        raise DataError(f"split sizes must be non-negative with a positive sum, got {list(ratios)}")
    assignment = stratify([issue.labels for issue in issues], ratios, seed)
    return [[issue for issue, s in zip(issues, assignment) if s == subset] for subset in range(len(ratios))]


def kfold(issues: Sequence[Issue], folds: int, seed: int) -> list[list[int]]:
    """Indices of the issues in each of `folds` stratified folds."""
    if folds < 2:
        raise DataError(f"--folds must be at least 2, got {folds}")
    if folds > len(issues):
        raise DataError(f"--folds {folds} is more than the {len(issues)} issues in the data")
    assignment = stratify([issue.labels for issue in issues], [1.0] * folds, seed)
    return [[i for i, s in enumerate(assignment) if s == fold] for fold in range(folds)]


def label_counts(issues: Sequence[Issue], label_names: Sequence[str]) -> dict[str, int]:
    counts = Counter(label for issue in issues for label in issue.labels)
    return {name: counts.get(name, 0) for name in label_names}


def write_split(
    input_path: str | Path,
    issues: Sequence[Issue],
    label_names: Sequence[str],
    out_dir: str | Path,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    force: bool = False,
) -> dict:
    """Writes train/eval/test.jsonl and manifest.json under `out_dir`; returns the manifest. An existing
    split there is replaced only with `force`."""
    if len(ratios) != len(SPLIT_NAMES):
        raise DataError(f"--sizes takes {len(SPLIT_NAMES)} numbers (train eval test), got {list(ratios)}")
    out_dir = Path(out_dir)
    existing = [name for name in (*[f"{n}.jsonl" for n in SPLIT_NAMES], "manifest.json") if (out_dir / name).exists()]
    if existing and not force:
        raise DataError(f"{out_dir}: already holds a split ({', '.join(existing)}); choose another --out or pass --force to replace it")
    subsets = split_issues(issues, ratios, seed)
    for name, subset in zip(SPLIT_NAMES, subsets):
        write_jsonl(out_dir / f"{name}.jsonl", subset)
    total = sum(ratios)
    manifest = {
        "seed": seed,
        "sizes": {name: round(r / total, 6) for name, r in zip(SPLIT_NAMES, ratios)},
        "input": {"path": str(input_path), "sha256": file_sha256(input_path), "examples": len(issues)},
        "splits": {
            name: {"examples": len(subset), "labels": label_counts(subset, label_names)}
            for name, subset in zip(SPLIT_NAMES, subsets)
        },
    }
    write_json(out_dir / "manifest.json", manifest)
    return manifest

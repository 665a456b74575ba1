from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from issuelab.data import Issue, read_issues, write_jsonl
from issuelab.errors import DataError
from issuelab.split import kfold, split_issues, stratify

from .helpers import make_issues


def test_same_seed_same_split_byte_for_byte(cli, toy_config, tmp_path):
    data = tmp_path / "issues.jsonl"
    write_jsonl(data, make_issues(200))
    for name in ("a", "b"):
        code, out, err = cli("split", "--config", toy_config, data, "--out", tmp_path / name, "--seed", 7)
        assert code == 0, err
    for file in ("train.jsonl", "eval.jsonl", "test.jsonl", "manifest.json"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()
    cli("split", "--config", toy_config, data, "--out", tmp_path / "c", "--seed", 8)
    assert (tmp_path / "a" / "test.jsonl").read_bytes() != (tmp_path / "c" / "test.jsonl").read_bytes()

    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["seed"] == 7
    assert manifest["sizes"] == {"train": 0.8, "eval": 0.1, "test": 0.1}
    assert manifest["input"]["examples"] == 200 and len(manifest["input"]["sha256"]) == 64
    sizes = [v["examples"] for v in manifest["splits"].values()]
    assert sizes == [160, 20, 20]
    assert set(manifest["splits"]["test"]["labels"]) == {"bug", "enhancement", "documentation", "ci/cd"}

    parts = [read_issues(tmp_path / "a" / f"{s}.jsonl", None) for s in ("train", "eval", "test")]
    ids = [i.id for part in parts for i in part]
    assert sorted(ids) == list(range(1, 201))  # every issue exactly once
    assert all([i.id for i in p] == sorted(i.id for i in p) for p in parts)  # input order kept


def test_custom_sizes(cli, toy_config, tmp_path):
    data = tmp_path / "issues.jsonl"
    write_jsonl(data, make_issues(100))
    code, out, _ = cli("split", "--config", toy_config, data, "--out", tmp_path / "s", "--sizes", 0.6, 0.2, 0.2)
    assert code == 0
    counts = [int(n) for n in re.findall(r"(?:train|eval|test) (\d+)", out)]
    assert counts == [60, 20, 20]


def test_stratification_keeps_rare_labels_in_every_subset():
    # 1000 issues; "rare" on 10 of them. A random 80/10/10 split often leaves a subset without it.
    issues = [Issue(i, "t", None, ["common"] + (["rare"] if i % 100 == 0 else [])) for i in range(1000)]
    for seed in range(5):
        subsets = split_issues(issues, [0.8, 0.1, 0.1], seed)
        rare = [sum("rare" in i.labels for i in s) for s in subsets]
        assert rare == [8, 1, 1]
        assert [len(s) for s in subsets] == [800, 100, 100]


def test_multilabel_proportions_close_to_the_ratios():
    issues = make_issues(500)
    subsets = split_issues(issues, [0.8, 0.1, 0.1], seed=3)
    total = Counter(label for i in issues for label in i.labels)
    for subset, ratio in zip(subsets, [0.8, 0.1, 0.1]):
        counts = Counter(label for i in subset for label in i.labels)
        for label, n in total.items():
            # labels are placed rarest first; the most frequent one absorbs the exact subset sizes
            assert abs(counts[label] - ratio * n) <= max(1.0, 0.25 * ratio * n), (label, counts[label], ratio * n)


def test_unlabeled_issues_are_split_too():
    issues = [Issue(i, "t", None, []) for i in range(10)]
    assert sorted(Counter(stratify([i.labels for i in issues], [0.8, 0.1, 0.1], 0)).values()) == [1, 1, 8]


def test_kfold_partitions_the_data():
    issues = make_issues(103)
    folds = kfold(issues, 5, seed=1)
    assert sorted(i for fold in folds for i in fold) == list(range(103))
    assert all(20 <= len(fold) <= 21 for fold in folds)
    with pytest.raises(DataError, match="at least 2"):
        kfold(issues, 1, 0)
    with pytest.raises(DataError, match="more than the 103 issues"):
        kfold(issues, 200, 0)


def test_split_errors(cli, toy_config, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    code, _, err = cli("split", "--config", toy_config, empty, "--out", tmp_path / "s")
    assert code == 2 and "no issues in the file" in err
    data = tmp_path / "issues.jsonl"
    write_jsonl(data, make_issues(10))
    code, _, err = cli("split", "--config", toy_config, data, "--out", tmp_path / "s", "--sizes", -1, 1, 1)
    assert code == 2 and "non-negative" in err

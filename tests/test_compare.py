"""`issuelab compare`: engines side by side on a split or in cross-validation, the report, the recommendation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from issuelab.compare import Comparison, EngineResult, recommend
from issuelab.config import load_config
from issuelab.config_file import set_config_engine
from issuelab.data import write_jsonl
from issuelab.errors import ConfigError
from issuelab.metrics import score_outputs
from issuelab.report import cooccurrence, precision_recall_curve

from .helpers import FILLER, SIGNALS, TOY_CONFIG, make_issues
from .helpers.tiny_bert import build_tiny_bert

pytest.importorskip("matplotlib", reason="the report extra is not installed: pip install -e '.[report]'")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A config whose embed engine is a tiny random BERT, and split data files."""
    root = tmp_path_factory.mktemp("compare")
    corpus = [" ".join(words) for words in SIGNALS.values()] + [" ".join(FILLER)]
    encoder = build_tiny_bert(root / "bert", corpus)
    config = root / "issuelab.toml"
    config.write_text(
        TOY_CONFIG.replace('engine = "tfidf"', 'engine = "tfidf"  # chosen by hand')
        + f'\n[train.embed]\nmodel = "{encoder}"\nmax_tokens = 32\nepochs = 8\nbatch_size = 8\nfinetune = "yes"\n',
        encoding="utf-8",
    )
    issues = make_issues(260, seed=21)
    for name, part in {"train": issues[:160], "eval": issues[160:200], "test": issues[200:], "all": issues[:150]}.items():
        write_jsonl(root / f"{name}.jsonl", part)
    return root


@pytest.mark.torch  # the project's embed engine is a tiny BERT
def test_compare_on_a_split_writes_a_readable_report_and_sets_the_engine(cli, project):
    out = project / "report"
    code, stdout, err = cli(
        "compare", "--config", project / "issuelab.toml", "--train", project / "train.jsonl", "--eval", project / "eval.jsonl",
        "--test", project / "test.jsonl", "--engines", "tfidf", "embed", "--out", out, "--write-config",
    )  # fmt: skip
    assert code == 0, err
    assert "Micro-Avg F1" in stdout and "recommended:" in stdout
    report = json.loads((out / "comparison.json").read_text())
    assert [e["engine"] for e in report["engines"]] == ["tfidf", "embed"]
    assert {k: report["data"][k] for k in ("train", "eval", "test", "labels")} == {"train": 160, "eval": 40, "test": 60, "labels": 4}
    for engine in report["engines"]:
        assert 0 < engine["micro_f1"] <= 1 and engine["latency_p50_ms"] > 0 and engine["run_bytes"] > 0
        assert engine["metrics"]["examples"] == 60
    assert report["engines"][0]["micro_f1"] > 0.8  # tfidf learns the toy task
    assert report["engines"][1]["run_bytes"] > report["engines"][0]["run_bytes"]  # a fine-tuned encoder is in the run
    assert report["recommended"] in ("tfidf", "embed")

    pngs = ["per-label-f1.png", "precision-recall.png", "precision-coverage.png", "cooccurrence-tfidf.png", "cooccurrence-embed.png"]
    for name in pngs:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000, name
    markdown = (out / "report.md").read_text()
    assert all(f"]({name})" in markdown for name in pngs)
    assert f"Recommended engine: `{report['recommended']}`" in markdown
    assert "| ci/cd |" in markdown  # the per-label table
    assert "| engine | labeled at precision 80% | labeled at precision 90% | labeled at precision 95% |" in markdown
    assert "| tfidf | " in markdown.split("## Precision and coverage")[1]  # its coverage at each precision target
    page = (out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == len(pngs)  # self-contained: every plot inlined
    assert "http://" not in page and "https://" not in page

    config_text = (project / "issuelab.toml").read_text()
    assert f'engine = "{report["recommended"]}"  # chosen by hand' in config_text
    assert load_config(project / "issuelab.toml").train.engine == report["recommended"]
    assert (out / "runs/tfidf/manifest.json").exists() and (out / "runs/embed/manifest.json").exists()


@pytest.mark.torch  # the project's embed engine is a tiny BERT
def test_compare_in_cross_validation_scores_every_issue_once(cli, project):
    out = project / "crossval-report"
    code, _, err = cli("compare", "--config", project / "issuelab.toml", "--data", project / "all.jsonl", "--folds", "3",
                       "--engines", "tfidf", "--out", out)  # fmt: skip
    assert code == 0, err
    report = json.loads((out / "comparison.json").read_text())
    assert report["method"] == "3-fold cross-validation"
    data = report["data"]
    assert {k: data[k] for k in ("issues", "folds", "labels", "multi_label")} == {"issues": 150, "folds": 3, "labels": 4, "multi_label": True}
    assert 1 < data["labels_per_issue"] < 2 and data["median_issues_per_label"] > 10
    assert report["reason"].endswith(f"on this data (multi-label, {data['labels_per_issue']:.1f} labels per issue, 4 labels, "
                                     f"a median of {data['median_issues_per_label']:g} labeled issues per label)")
    (engine,) = report["engines"]
    assert engine["metrics"]["examples"] == 150  # out-of-fold: each issue scored by a model that did not see it
    assert engine["micro_f1"] > 0.6 and engine["run_bytes"] > 0
    curve = engine["learning_curve"]  # each fold also trained on 1/4, 1/2 and 3/4 of its 100 training issues
    assert [round(point["training_issues"]) for point in curve] == [25, 50, 75, 100]
    assert all(len(point["micro_f1"]) == 3 for point in curve)
    assert sum(curve[-1]["micro_f1"]) / 3 == pytest.approx(engine["metrics"]["f1"]["value"], abs=0.02)  # the folds themselves
    assert (out / "learning-curve.png").read_bytes().startswith(PNG_MAGIC)
    assert "with 50 labeled issues" in (out / "report.md").read_text()


@pytest.mark.torch  # the project's embed engine is a tiny BERT
def test_compare_flags_are_checked(cli, project):
    code, _, err = cli("compare", "--config", project / "issuelab.toml", "--train", project / "train.jsonl")
    assert code == 2 and "--test" in err
    code, _, err = cli("compare", "--config", project / "issuelab.toml", "--data", project / "all.jsonl", "--train", project / "train.jsonl")
    assert code == 2 and "not both" in err
    code, _, err = cli("compare", "--config", project / "issuelab.toml", "--data", project / "all.jsonl",
                       "--engines", "tfidf", "tfdif", "--out", project / "typo")  # fmt: skip
    assert code == 2 and "unknown engine 'tfdif'" in err and not (project / "typo").exists()


def fake_result(engine: str, outputs: list[str], latency: float) -> EngineResult:
    gold = [["bug"], ["bug"], ["docs"], ["docs"]]
    metrics = score_outputs(engine, gold, outputs, ["bug", "docs"])
    return EngineResult(engine, metrics, np.zeros((4, 2)), [o.split(", ") for o in outputs], False, 1.0, latency, latency, 1, 0, 0.0)


def test_recommend_takes_the_best_f1_unless_a_near_tie_is_faster():
    gold = [["bug"], ["bug"], ["docs"], ["docs"]]
    slow_best = fake_result("slow", ["bug", "bug", "docs", "docs"], latency=0.5)
    fast_worse = fake_result("fast", ["bug", "docs", "docs", "docs"], latency=0.01)
    chosen = recommend(Comparison(["bug", "docs"], gold, [fast_worse, slow_best], "split", {}))
    assert chosen.recommended == "slow" and "best micro F1" in chosen.reason  # 1.00 vs 0.75: no tie
    tied = fake_result("fast", ["bug", "bug", "docs", "docs"], latency=0.01)
    chosen = recommend(Comparison(["bug", "docs"], gold, [slow_best, tied], "split", {}))
    assert chosen.recommended == "fast" and "50.0x faster" in chosen.reason


def test_cooccurrence_counts_gold_against_predicted_labels():
    labels = ["a", "b", "c"]
    gold = [["a"], ["a", "b"], ["c"]]
    predicted = [["a"], ["b"], ["a", "c"]]
    assert cooccurrence(gold, predicted, labels).tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]


def test_precision_recall_curve_trades_one_for_the_other():
    gold = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=bool)
    scores = np.array([[0.9, 0.2], [0.3, 0.8], [0.6, 0.4], [0.1, 0.7]])
    result = EngineResult("x", None, scores, [], True, 0, 0, 0, 0, 0, 0.0)  # type: ignore[arg-type]
    precision, recall = precision_recall_curve(result, gold, np.array([0.0, 0.5, 0.95]))
    assert recall.tolist() == [1.0, 0.75, 0.0]
    assert precision[0] == pytest.approx(4 / 8) and precision[1] == pytest.approx(3 / 4) and np.isnan(precision[2])


def test_set_config_engine_keeps_comments_and_adds_what_is_missing(tmp_path):
    path = tmp_path / "issuelab.toml"
    path.write_text(TOY_CONFIG.replace('engine = "tfidf"\n', ""), encoding="utf-8")  # [train] without engine
    set_config_engine(path, "embed")
    assert load_config(path).train.engine == "embed" and "[train]\nengine = \"embed\"\n" in path.read_text()
    path.write_text(TOY_CONFIG.split("[train]")[0], encoding="utf-8")  # no [train] at all
    set_config_engine(path, "tfidf")
    assert load_config(path).train.engine == "tfidf"
    with pytest.raises(ConfigError, match="no such config"):
        set_config_engine(tmp_path / "missing.toml", "tfidf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["issuelab.toml"]  # no temp file left behind

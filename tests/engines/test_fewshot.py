"""The fewshot engine: zero labeled issues upward, on CPU with a tiny random encoder whose labels are
described by their signal words (a random encoder still maps shared words to similar embeddings)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from issuelab.config import parse_config
from issuelab.data import Issue
from issuelab.errors import DataError
from issuelab.labeler import Labeler
from issuelab.train import fit_labeler, train_run

from ..helpers import FILLER, SIGNALS, make_issues
from ..helpers.tiny_bert import build_tiny_bert

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    corpus = [" ".join(words) for words in SIGNALS.values()] + [" ".join(FILLER)] + [" ".join(SIGNALS)]
    return build_tiny_bert(tmp_path_factory.mktemp("bert"), corpus)


def config_text(encoder, labels=tuple(SIGNALS)) -> str:
    described = "\n".join(f'"{name}" = "{" ".join(SIGNALS[name])}"' for name in labels)
    return (f'[project]\nrepo = "acme/widgets"\n\n[labels]\n{described}\n\n[train]\nengine = "fewshot"\nmulti_label = "true"\n\n'
            f'[train.fewshot]\nmodel = "{encoder}"\nmax_tokens = 32\ninference_dtype = "float32"\nadapt_epochs = 0\n')  # the probe on a fixed encoder


def config_for(encoder, labels=tuple(SIGNALS)):
    import tomllib

    return parse_config(tomllib.loads(config_text(encoder, labels)))


def micro_f1(predicted: list[list[str]], issues) -> float:
    tp = sum(len(set(p) & set(i.labels)) for p, i in zip(predicted, issues))
    return 2 * tp / (sum(map(len, predicted)) + sum(len(i.labels) for i in issues))


def top_label_accuracy(labeler, issues) -> float:
    scores = np.array([[s[name] for name in labeler.label_names] for s in labeler.scores(issues)])
    return float(np.mean([labeler.label_names[row.argmax()] in issue.labels for row, issue in zip(scores, issues)]))


def test_a_run_from_no_labeled_issue_labels_from_descriptions(encoder, tmp_path):
    labeler, metrics = train_run(config_for(encoder), [], None, tmp_path / "run")
    assert metrics is None and labeler.manifest["calibration"]["source"].startswith("zero-shot")
    assert set(labeler.thresholds.values()) == {0.5}  # twice the even share of 4 labels
    test = make_issues(120, seed=4)
    assert top_label_accuracy(labeler, test) > 0.6  # chance: about 0.4
    predicted = [p.labels for p in labeler.predict(test)]
    assert all(1 <= len(p) <= 3 for p in predicted) and micro_f1(predicted, test) > 0.45
    loaded = Labeler.load(tmp_path / "run")
    assert [p.scores for p in loaded.predict(test[:20])] == [p.scores for p in labeler.predict(test[:20])]
    assert not list((tmp_path / "run").rglob("*.pkl")) and not list((tmp_path / "run").rglob("*.bin"))


def test_the_cli_trains_with_no_training_file_and_predicts(encoder, tmp_path, cli):
    path = tmp_path / "issuelab.toml"
    path.write_text(config_text(encoder))
    code, out, err = cli("train", "--config", path, "--out", tmp_path / "run")
    assert code == 0, err
    assert "on 0 issues" in out
    code, out, err = cli("predict", "--model", tmp_path / "run", "--title", "crash traceback", "--body", "it fails with an exception", "--json")
    assert code == 0, err
    assert json.loads(out)["labels"][0] == "bug"
    code, _, err = cli("train", "--config", path, "--engine", "tfidf", "--out", tmp_path / "tfidf")
    assert code == 2 and "--train is required: engine 'tfidf'" in err


def test_examples_improve_on_descriptions_and_a_label_without_any_still_scores(encoder):
    test = make_issues(120, seed=5)
    zero, _ = fit_labeler(config_for(encoder), [], None)
    train = [issue for issue in make_issues(200, seed=6) if "ci/cd" not in issue.labels]  # a label never seen
    few, metrics = fit_labeler(config_for(encoder), train, None)
    assert few.manifest["engine_info"]["labels_without_examples"] == ["ci/cd"]
    assert few.manifest["calibration"]["source"].startswith("out-of-fold") and metrics.name == "out-of-fold"
    assert micro_f1([p.labels for p in few.predict(test)], test) > micro_f1([p.labels for p in zero.predict(test)], test)
    ci = [issue for issue in test if issue.labels == ["ci/cd"]]
    others = [issue for issue in test if "ci/cd" not in issue.labels]
    ci_scores = [s["ci/cd"] for s in few.scores(ci)]
    other_scores = [s["ci/cd"] for s in few.scores(others)]
    auc = np.mean([c > o for c in ci_scores for o in other_scores])
    assert auc > 0.75, auc  # known from its description alone


def test_a_label_added_to_the_config_works_at_once(encoder):
    train = [issue for issue in make_issues(160, seed=7) if "documentation" not in issue.labels]
    before, _ = fit_labeler(config_for(encoder, labels=("bug", "enhancement", "ci/cd")), train, None)
    after, _ = fit_labeler(config_for(encoder), train, None)  # documentation added, still no issue carries it
    docs = [issue for issue in make_issues(150, seed=8) if issue.labels == ["documentation"]]
    assert "documentation" not in before.label_names
    found = np.mean(["documentation" in p.labels for p in after.predict(docs)])
    assert found > 0.5, found


def test_an_engine_that_needs_labeled_issues_says_so(encoder):
    with pytest.raises(DataError, match="engine 'tfidf' learns from labeled issues"):
        fit_labeler(config_for(encoder), [], None, engine="tfidf")


def test_unlabeled_issues_centre_the_embeddings_so_a_description_in_the_projects_words_does_not_draw_everything(encoder, tmp_path):
    """Every issue of the repository shares its words (here: the filler); a label described in them
    attracts every issue until the repository's mean is taken out, which the unlabeled issues give."""
    import tomllib

    text = config_text(encoder).replace(f'"documentation" = "{" ".join(SIGNALS["documentation"])}"',
                                        f'"documentation" = "{" ".join(SIGNALS["documentation"][:2] + FILLER)}"')  # fmt: skip
    config = parse_config(tomllib.loads(text))
    unlabeled = make_issues(200, seed=10)
    test = make_issues(150, seed=11)
    plain, _ = fit_labeler(config, [], None)
    centred, _ = fit_labeler(config, [], None, unlabeled=[Issue(i.id, i.title, i.body) for i in unlabeled])
    assert centred.manifest["engine_info"]["unlabeled_issues"] == 200
    assert top_label_accuracy(centred, test) > top_label_accuracy(plain, test) + 0.1
    assert np.allclose(centred.engine.center, centred.engine.encoder.embed(unlabeled).mean(axis=0), atol=1e-5)
    centred.save(tmp_path / "run")
    loaded = Labeler.load(tmp_path / "run")
    assert [p.scores for p in loaded.predict(test[:20])] == [p.scores for p in centred.predict(test[:20])]


def test_the_evidence_names_the_description_and_the_most_similar_labeled_issues(encoder, tmp_path):
    train = make_issues(40, seed=12)
    for issue in train:
        issue.extra = {"url": f"https://github.com/acme/widgets/issues/{issue.id}"}
    labeler, _ = train_run(config_for(encoder), train, None, tmp_path / "run")
    issue = Issue(1, "crash with a traceback", "it fails with an exception")
    loaded = Labeler.load(tmp_path / "run")
    (description, similar) = loaded.explain(issue, ["bug"])["bug"]
    assert description.startswith("description: similarity ")
    assert similar.startswith("similar labeled issues: https://github.com/acme/widgets/issues/")
    named = [int(part.split("/")[-1].split(" ")[0]) for part in similar.removeprefix("similar labeled issues: ").split(", ")]
    assert len(named) == 3 and all("bug" in train[n - 1].labels for n in named)  # only issues that carry the label
    assert loaded.explain(issue, ["bug"]) == labeler.explain(issue, ["bug"])  # the references survive save and load


def test_the_probe_is_kept_in_the_run_and_a_run_scored_the_earlier_way_is_refused(encoder, tmp_path, monkeypatch):
    from issuelab.engines import fewshot
    from issuelab.errors import RunError

    labeler, _ = train_run(config_for(encoder), make_issues(60, seed=13), None, tmp_path / "run")
    with np.load(tmp_path / "run" / "model" / "vectors.npz", allow_pickle=False) as vectors:
        assert vectors["probe_coef"].shape == (4, vectors["labels"].shape[1]) and np.abs(vectors["probe_coef"]).sum() > 0
    monkeypatch.setattr(fewshot, "fit_logistic_heads", lambda *a, **k: pytest.fail("a loaded run refits its probe"))
    test = make_issues(20, seed=14)
    assert [p.scores for p in Labeler.load(tmp_path / "run").predict(test)] == [p.scores for p in labeler.predict(test)]
    state_path = tmp_path / "run" / "model" / "engine.json"
    state = json.loads(state_path.read_text())
    state["options"]["neighbours"] = 10  # what a run of the earlier neighbour-vote scoring saved: its thresholds fit those scores
    state_path.write_text(json.dumps(state))
    with pytest.raises(RunError, match="earlier fewshot.*train it again"):
        Labeler.load(tmp_path / "run")


@pytest.mark.slow
def test_the_seeds_labels_zero_shot_with_the_bundled_minilm():
    """The seed's 16 labels and descriptions (examples/nebari/issuelab.toml), no labeled issue, the real
    encoder: every answer is in the label set, and issues that name their cloud, the docs or the CI get it."""
    from issuelab.config import load_config

    config = load_config("examples/nebari/issuelab.toml")
    issues = {
        "aws": Issue(1, "Deploy on AWS fails: EKS node group never becomes ready", "Running nebari deploy with provider aws, the cluster is created but terraform times out."),
        "gcp": Issue(2, "GKE deployment fails with a permissions error on Google Cloud", "The service account lacks the container.clusters.create permission."),
        "azure": Issue(3, "Azure AKS deploy broken after upgrade", "The AKS cluster creation fails with a quota error in the resource group."),
        "documentation": Issue(4, "Docs: explain how to configure Keycloak groups", "The documentation has no page on managing users and groups; please add a guide."),
        "ci/cd": Issue(5, "GitHub Actions workflow fails on every pull request", "The CI pipeline fails in the lint job since yesterday."),
    }
    labeler, metrics = fit_labeler(config, [], None, engine="fewshot")
    assert metrics is None and labeler.label_names == config.label_names
    for expected, prediction in zip(issues, labeler.predict(list(issues.values()))):
        assert 1 <= len(prediction.labels) <= config.policy.max_labels and set(prediction.labels) <= set(config.label_names)
        assert expected in prediction.labels, (expected, prediction.labels)

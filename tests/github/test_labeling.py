"""One issue on GitHub: read, scored once, decided once by the policy, labeled with one POST."""

from __future__ import annotations

from issuelab import labeler as labeler_module
from issuelab import policy
from issuelab.github.client import GitHubClient
from issuelab.github.labeling import GitHubLabeler
from issuelab.labeler import Labeler

from ..helpers.fake_github import FakeGitHub, make_issue

REPO = "acme/widgets"
TOKEN = "ghs_labeling_token"


def test_each_issue_is_scored_once_and_its_labels_chosen_once(run_dir, monkeypatch):
    calls = {"choose_labels": 0, "predict_scores": 0}
    real_choose = policy.choose_labels

    def counting_choose(*args, **kwargs):
        calls["choose_labels"] += 1
        return real_choose(*args, **kwargs)

    monkeypatch.setattr(policy, "choose_labels", counting_choose)  # what `decide` calls
    monkeypatch.setattr(labeler_module, "choose_labels", counting_choose)  # what `Labeler.predict` would call
    labeler = Labeler.load(run_dir)
    real_scores = labeler.engine.predict_scores

    def counting_scores(issues):
        calls["predict_scores"] += 1
        return real_scores(issues)

    monkeypatch.setattr(labeler.engine, "predict_scores", counting_scores)
    with FakeGitHub(token=TOKEN) as fake:
        fake.add_issue(REPO, make_issue(1, "app crash with traceback", "it fails with an exception error, broken"))
        client = GitHubClient(fake.url, TOKEN, backoff=0.01, log=lambda m: None)
        decision = GitHubLabeler(labeler, client).label_issue(REPO, 1)
        assert decision.action == "label" and "bug" in decision.labels
        assert calls == {"choose_labels": 1, "predict_scores": 1}
        assert fake.posts_for(REPO, 1) == [decision.labels]


def test_a_run_directory_serves_each_repository_its_run_and_picks_up_a_replaced_one(run_dir, tmp_path):
    import os
    import shutil

    import pytest

    from issuelab.errors import IssuelabError
    from issuelab.github.labeling import RunDirectory

    models = tmp_path / "models"
    shutil.copytree(run_dir, models / "acme" / "widgets")
    with FakeGitHub() as fake:
        for repo in ("acme/widgets", "acme/gadgets"):
            fake.add_issue(repo, make_issue(1, "crash with a traceback", "it fails with an exception"))
        runs = RunDirectory(models, GitHubClient(fake.url, None, log=lambda m: None), dry_run=True)
        assert runs.label_issue("acme/widgets", 1).action == "label" and fake.label_posts == []  # dry run
        with pytest.raises(IssuelabError, match="no run for acme/gadgets in .*: add .*acme/gadgets or .*default"):
            runs.label_issue("acme/gadgets", 1)
        shutil.copytree(run_dir, models / "default")
        assert runs.labeler_for("acme/gadgets") is not runs.labeler_for("acme/widgets")
        first = runs.labeler_for("acme/widgets")
        assert runs.labeler_for("acme/widgets") is first  # loaded once
        manifest = models / "acme" / "widgets" / "manifest.json"
        os.utime(manifest, ns=(manifest.stat().st_atime_ns, manifest.stat().st_mtime_ns + 1_000_000))  # a new run promoted
        assert runs.labeler_for("acme/widgets") is not first
    with pytest.raises(IssuelabError, match="--models .*: not a directory"):
        RunDirectory(tmp_path / "nope", GitHubClient("http://127.0.0.1:9", None))

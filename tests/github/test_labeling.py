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

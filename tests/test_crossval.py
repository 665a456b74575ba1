"""Cross-validation resolves the task once: every fold learns the same kind of labeling."""

from __future__ import annotations

from issuelab.config import load_config
from issuelab.crossval import crossval_folds
from issuelab.train import make_task

from .helpers import make_issues


def test_every_fold_learns_the_task_of_the_whole_data(toy_config):
    config = load_config(toy_config)
    issues = make_issues(60, multi_label=False)
    issues[0].labels = ["bug", "ci/cd"]  # one issue with two labels: the data is multi-label
    assert make_task(config, issues).multi_label and not make_task(config, issues[1:]).multi_label
    folds = list(crossval_folds(config, issues, "tfidf", folds=3, progress=False))
    assert len(folds) == 3 and all(fold.labeler.multi_label for fold in folds)  # also the fold that holds issue 0 out


def test_the_config_can_fix_the_task(toy_config):
    config = load_config(toy_config)
    single = make_issues(20, multi_label=False)
    config.train.multi_label = "true"
    assert make_task(config, single).multi_label
    config.train.multi_label = "false"
    assert not make_task(config, make_issues(20)).multi_label
    assert make_task(config, single).label_pairs == config.label_pairs

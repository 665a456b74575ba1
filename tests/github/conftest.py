"""The trained toy run the GitHub side labels with."""

from __future__ import annotations

from pathlib import Path

import pytest

from issuelab.config import parse_config
from issuelab.train import train_run

from ..helpers import TOY_CONFIG, make_issues


@pytest.fixture(scope="package")
def run_dir(tmp_path_factory) -> Path:
    import tomllib

    config = parse_config(tomllib.loads(TOY_CONFIG.replace("min_labels = 1", "min_labels = 0")))
    issues = make_issues(300, seed=1)
    out = tmp_path_factory.mktemp("runs") / "toy"
    train_run(config, issues[:240], issues[240:], out, engine="tfidf")
    return out

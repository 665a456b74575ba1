"""Property-based: random bytes and mutations of valid files, fed to every reader of user input, give
the reader's own error (exit 2 with a message) or a result, never another exception (a traceback)."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from issuelab.config import load_config
from issuelab.data import read_issues, write_jsonl
from issuelab.errors import IssuelabError
from issuelab.github.events import EventError, issue_target
from issuelab.importers import import_issues
from issuelab.labeler import Labeler
from issuelab.train import train_run

from .helpers import TOY_CONFIG, make_issues

LABELS = ["bug", "enhancement", "documentation", "ci/cd"]
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def mutated(valid: bytes):
    """Valid bytes with a slice replaced by random bytes, or cut short, or random bytes alone."""
    return st.one_of(
        st.binary(max_size=300),
        st.integers(0, len(valid)).map(lambda n: valid[:n]),
        st.tuples(st.integers(0, len(valid)), st.integers(0, 40), st.binary(min_size=1, max_size=40)).map(
            lambda t: valid[: t[0]] + t[2] + valid[t[0] + t[1] :]
        ),
    )


def reads_or_refuses(read, data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"input{suffix}"
        path.write_bytes(data)
        try:
            read(path)
        except IssuelabError:
            pass


VALID_JSONL = b"".join(json.dumps(i.to_dict()).encode() + b"\n" for i in make_issues(5))
VALID_CSV = b'title,body,labels\n"crash on start","it fails",bug\n"add option",,"enhancement,documentation"\n'


@FAST
@given(mutated(VALID_JSONL))
def test_jsonl_reader(data):
    reads_or_refuses(lambda p: read_issues(p, LABELS), data, ".jsonl")


@FAST
@given(mutated(VALID_CSV))
def test_csv_import(data):
    reads_or_refuses(lambda p: import_issues(p, LABELS), data, ".csv")


@FAST
@given(mutated(TOY_CONFIG.encode()))
def test_config_reader(data):
    reads_or_refuses(load_config, data, ".toml")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
PAYLOADS = st.fixed_dictionaries(
    {"action": st.just("opened")},
    optional={"issue": st.fixed_dictionaries({}, optional={"number": JSON}) | JSON,
              "repository": st.fixed_dictionaries({}, optional={"full_name": st.sampled_from(["acme/widgets", "../.."]) | JSON}) | JSON},
)  # fmt: skip


@FAST
@given(st.one_of(JSON, PAYLOADS))
def test_webhook_payloads(payload):
    try:
        issue_target("issues", payload, ("opened",))
    except EventError:
        pass


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("prop")
    (root / "issuelab.toml").write_text(TOY_CONFIG, encoding="utf-8")
    write_jsonl(root / "train.jsonl", make_issues(80))
    config = load_config(root / "issuelab.toml")
    train_run(config, read_issues(root / "train.jsonl", config.label_names), None, root / "run", engine="tfidf")
    return root / "run"


RUN_FILES = ["manifest.json", "labels.json", "thresholds.json", "prompt.txt", "model/options.json", "model/vocabulary.json", "model/weights.npz"]


@FAST
@given(st.sampled_from(RUN_FILES), st.data())
def test_run_loading(good_run, name, data):
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(shutil.copytree(good_run, Path(tmp) / "run"))
        valid = (run / name).read_bytes()
        (run / name).write_bytes(data.draw(mutated(valid)))
        try:
            Labeler.load(run)
        except IssuelabError:
            pass

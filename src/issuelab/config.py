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
import difflib
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .prompt import PLACEHOLDERS, SEED_TEMPLATE


@dataclass(frozen=True)
class Label:
    name: str
    description: str


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
    engine_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # [train.<engine>]


@dataclass
class PolicyConfig:
    max_labels: int = 3  # 0 means no limit
    min_labels: int = 1  # if nothing passes its threshold, take the top-scoring labels up to this many
    default_label: str = ""  # for the GitHub side: applied when nothing passes
    dry_run: bool = False  # GitHub side: decide and report, add no label
    skip_labeled: bool = True  # GitHub side: leave issues that already carry a managed label
    skip_bots: bool = True  # GitHub side: leave issues opened by bots
    skip_authors: list[str] = field(default_factory=list)  # GitHub side: logins to leave alone


@dataclass
class Config:
    labels: list[Label]
    project: ProjectConfig = field(default_factory=ProjectConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    teachers: list[TeacherConfig] = field(default_factory=list)
    annotate: AnnotateConfig = field(default_factory=AnnotateConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    aliases: dict[str, str] = field(default_factory=dict)  # a repository's label spelling -> a label
    path: Path | None = None

    @property
    def label_names(self) -> list[str]:
        return [label.name for label in self.labels]

    @property
    def label_pairs(self) -> list[tuple[str, str]]:
        return [(label.name, label.description) for label in self.labels]

    def engine_options(self, engine: str) -> dict[str, Any]:
        return dict(self.train.engine_options.get(engine, {}))


def _suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return f"{hint} Known keys: {', '.join(known)}."


def _check_type(value: Any, annotation: Any, where: str) -> Any:
    """Checks a TOML value against a dataclass field's type; ints are accepted for floats."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(annotation):
            if option is type(None) and value is None:
                return None
            try:
                return _check_type(value, option, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {annotation}, got {value!r}")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_check_type(v, args[0], where) for v in value)
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_check_type(v, a, where) for v, a in zip(value, args))
    if origin in (list, dict):
        expected = origin
        if not isinstance(value, expected):
            raise ConfigError(f"{where}: expected a {expected.__name__}, got {value!r}")
        return value
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is int and isinstance(value, bool):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if not isinstance(value, annotation):
        raise ConfigError(f"{where}: expected {annotation.__name__}, got {value!r}")
    return value


def dataclass_from_dict(cls: type, data: dict[str, Any], where: str):
    """Builds `cls` from a dict; unknown keys and wrong types are errors naming the key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"{where}: unknown key '{key}'.{_suggest(key, list(fields))}")
        values[key] = _check_type(value, hints[key], f"{where}.{key}")
    missing = [
        name
        for name, f in fields.items()
        if name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{where}: missing required key(s): {', '.join(missing)}")
    try:
        return cls(**values)
    except ValueError as e:  # an Options.__post_init__ check
        raise ConfigError(f"{where}: {e}") from None


_SECTIONS = ("project", "labels", "prompt", "teachers", "annotate", "train", "policy", "aliases")


def parse_config(data: dict[str, Any], source: str = "issuelab.toml") -> Config:
    for key in data:
        if key not in _SECTIONS:
            raise ConfigError(f"{source}: unknown section [{key}].{_suggest(key, list(_SECTIONS))}")

    raw_labels = data.get("labels")
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
        if not name.strip() or name != name.strip() or "," in name or "\n" in name:
            raise ConfigError(
                f"{source}: [labels] '{name}': a label name must be non-blank, without commas, newlines "
                "or surrounding spaces (outputs are comma-separated)"
            )
        if name.lower() in seen:  # outputs are matched case-insensitively, as in the seed
            raise ConfigError(
                f"{source}: [labels] duplicate label '{name}' (same as '{seen[name.lower()]}' ignoring case)"
            )
        seen[name.lower()] = name
        labels.append(Label(name, description))

    prompt = dataclass_from_dict(PromptConfig, data.get("prompt", {}), f"{source}: [prompt]")
    unknown = set(re.findall(r"\{(\w+)\}", prompt.template)) - set(PLACEHOLDERS)
    if unknown:
        raise ConfigError(
            f"{source}: [prompt] template: unknown placeholder(s) {sorted(unknown)}; "
            f"use {', '.join('{' + p + '}' for p in PLACEHOLDERS)}"
        )

    raw_teachers = data.get("teachers", [])
    if not isinstance(raw_teachers, list):
        raise ConfigError(f"{source}: teachers must be an array of tables: [[teachers]]")
    teachers = [
        dataclass_from_dict(TeacherConfig, t, f"{source}: [[teachers]] #{i + 1}") for i, t in enumerate(raw_teachers)
    ]
    names = [t.name for t in teachers]
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: [[teachers]] names must be unique (cache entries are keyed by name): {names}")
    annotate = dataclass_from_dict(AnnotateConfig, data.get("annotate", {}), f"{source}: [annotate]")
    if annotate.min_votes < 0 or annotate.max_body_chars < 1 or not 0 <= annotate.review_below <= 1:
        raise ConfigError(f"{source}: [annotate] min_votes >= 0, max_body_chars >= 1, 0 <= review_below <= 1")

    raw_train = dict(data.get("train", {}))
    from .engines import ENGINES, engine_class  # engines import config types; import here

    engine_options = {k: raw_train.pop(k) for k in list(raw_train) if k in ENGINES and isinstance(raw_train[k], dict)}
    train = dataclass_from_dict(TrainConfig, raw_train, f"{source}: [train]")
    if train.engine not in ENGINES:
        raise ConfigError(f"{source}: [train] engine '{train.engine}' is not one of: {', '.join(ENGINES)}")
    if train.multi_label not in ("auto", "true", "false"):
        raise ConfigError(f"{source}: [train] multi_label must be \"auto\", \"true\" or \"false\"")
    for name, options in engine_options.items():  # validated now, not at the end of a long run
        dataclass_from_dict(engine_class(name).Options, options, f"{source}: [train.{name}]")
    train.engine_options = engine_options

    policy = dataclass_from_dict(PolicyConfig, data.get("policy", {}), f"{source}: [policy]")
    if policy.max_labels < 0 or policy.min_labels < 0:
        raise ConfigError(f"{source}: [policy] max_labels and min_labels must be >= 0")
    if policy.default_label and policy.default_label not in seen.values():
        raise ConfigError(f"{source}: [policy] default_label '{policy.default_label}' is not in [labels]")
    if not all(isinstance(login, str) for login in policy.skip_authors):
        raise ConfigError(f"{source}: [policy] skip_authors must be a list of GitHub logins")

    raw_aliases = data.get("aliases", {})
    if not isinstance(raw_aliases, dict):
        raise ConfigError(f'{source}: [aliases] must be a table of "repository label" = "label"')
    aliases = {}
    for alias, target in raw_aliases.items():
        if not isinstance(target, str) or target.lower() not in seen:
            raise ConfigError(
                f"{source}: [aliases] '{alias}' = {target!r}: the target must be a label of [labels] "
                f"({', '.join(seen.values())})"
            )
        aliases[alias] = seen[target.lower()]

    project = dataclass_from_dict(ProjectConfig, data.get("project", {}), f"{source}: [project]")
    return Config(labels=labels, project=project, prompt=prompt, teachers=teachers, annotate=annotate, train=train,
                  policy=policy, aliases=aliases)  # fmt: skip


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found. Create one with: issuelab init {path}") from None
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


STARTER_LABELS = {
    "bug": "A reported error or unexpected behavior in the software.",
    "enhancement": "A request for a new feature or an improvement to an existing one.",
    "documentation": "Issues related to improving or expanding the documentation.",
    "question": "A user question that requires clarification or guidance.",
}


def toml_string(value: str) -> str:
    """A TOML basic string (JSON's escapes are valid TOML)."""
    import json

    return json.dumps(value, ensure_ascii=False)


def starter_config(repo: str = "owner/name", labels: dict[str, str] | None = None) -> str:
    lines = "\n".join(f"{toml_string(name)} = {toml_string(desc)}" for name, desc in (labels or STARTER_LABELS).items())
    return STARTER_CONFIG.format(repo=repo, labels=lines)


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
engine = "tfidf"               # tfidf
seed = 0
multi_label = "auto"           # auto: single-label (argmax) when every training issue has one label

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

"""Engine names -> "module:Class", imported on use so that `issuelab --help` stays fast; and engines
built from their option tables (`[train.<engine>]` of issuelab.toml, or `--set ENGINE.KEY=VALUE`)."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from ..options import dataclass_from_dict

ENGINES: dict[str, str] = {
    "tfidf": "issuelab.engines.tfidf:TfidfEngine",
    "lora": "issuelab.engines.lora:LoraEngine",
    "embed": "issuelab.engines.embed:EmbedEngine",
    "head": "issuelab.engines.llm_head:HeadEngine",
    "ensemble": "issuelab.engines.ensemble:EnsembleEngine",
    "fewshot": "issuelab.engines.fewshot:FewshotEngine",
}


def engine_class(name: str) -> Any:
    if name not in ENGINES:
        raise ConfigError(f"unknown engine '{name}'; known engines: {', '.join(ENGINES)}")
    module_name, class_name = ENGINES[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def option_names(name: str) -> set[str]:
    return {field.name for field in dataclasses.fields(engine_class(name).Options)}


def create_engine(name: str, options: Mapping[str, Any] | None = None,
                  member_options: Mapping[str, Mapping[str, Any]] | None = None):  # fmt: skip
    """Engine `name` with its options table (`[train.<name>]`); an engine made of others (the ensemble)
    builds each member from its own table in `member_options` (tables by engine name)."""
    cls = engine_class(name)
    settings = dataclass_from_dict(cls.Options, dict(options or {}), f"[train.{name}]")
    if getattr(cls, "has_members", False):
        tables = member_options or {}
        return cls(settings, make_member=lambda member: create_engine(member, tables.get(member), tables))
    return cls(settings)

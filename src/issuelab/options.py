"""Typed option tables: a dict (from TOML, JSON or `--set`) checked against a dataclass.

The one validator behind every table of `issuelab.toml`, every engine's options and `--set ENGINE.KEY=VALUE`:
unknown keys are errors that suggest the closest known key; values are checked against the field's
type (ints are accepted for floats, lists for tuples); the dataclass's `__post_init__` checks the rest.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from typing import Any

from .errors import ConfigError


def suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return f"{hint} Known keys: {', '.join(known)}."


def check_type(value: Any, annotation: Any, where: str) -> Any:
    """Checks a value against a dataclass field's type; returns it (ints as floats, lists as tuples)."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(annotation):
            if option is type(None) and value is None:
                return None
            try:
                return check_type(value, option, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {annotation}, got {value!r}")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(check_type(v, args[0], where) for v in value)
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected a list of {len(args)} values, got {value!r}")
        return tuple(check_type(v, a, where) for v, a in zip(value, args))
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
            raise ConfigError(f"{where}: unknown key '{key}'.{suggest(key, list(fields))}")
        values[key] = check_type(value, hints[key], f"{where}.{key}")
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


def options_from_json(cls: type, saved: dict[str, Any]):
    """Options as a run saved them (`dataclasses.asdict`: tuples became lists), built back."""
    return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in saved.items()})


def parse_setting(item: str, flag: str = "--set") -> tuple[str, Any]:
    """KEY=VALUE from the command line; the value is parsed as JSON when it can be (numbers, booleans,
    lists), else kept as a string."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"{flag} {item!r}: expected KEY=VALUE")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value

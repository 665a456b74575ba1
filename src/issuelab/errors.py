"""Errors a user can act on. The CLI prints their message and exits 2; no traceback."""


class IssuelabError(Exception):
    """Base class: the message names the file, line, field or flag and how to fix it."""


class ConfigError(IssuelabError):
    """issuelab.toml is missing, malformed or inconsistent."""


class DataError(IssuelabError):
    """An input data file (JSONL, CSV, predictions) is malformed."""


class RunError(IssuelabError):
    """A run directory is missing, incomplete or damaged."""

"""The labeling prompt: the seed's wording, rendered from the project's label set.

Placeholders: {labels} (one `- "name": description` line per label), {example} (the first three
label names, the seed's "Format example"), {title} and {body}. Substitution is a single pass, so
an issue body that contains "{title}" is left as it is.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

SEED_TEMPLATE = """\
You are an assistant that assigns GitHub issue labels.
Return ONLY a single line of comma-separated labels from the allowed set.
Format example:
{example}
Rules:
- Choose any number of labels from the allowed set (including zero).
- Do not include any extra text, code fences, or explanations. Only the CSV line.

Allowed labels with descriptions:
{labels}

Issue title: {title}
Issue body:
{body}"""

PLACEHOLDERS = ("labels", "example", "title", "body")
_PLACEHOLDER_RE = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")


def render_label_lines(labels: Sequence[tuple[str, str]]) -> str:
    return "\n".join(f'- "{name}": {description}' for name, description in labels)


def render_prompt(template: str, labels: Sequence[tuple[str, str]], title: str, body: str | None) -> str:
    values = {
        "labels": render_label_lines(labels),
        "example": ", ".join(name for name, _ in labels[:3]),
        "title": title,
        "body": body or "",
    }
    return _PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], template)

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


def render_label_lines(labels: Sequence[tuple[str, str]], describe: bool = True) -> str:
    if not describe:  # the compact prompt: names only, for a model that has learned what they mean
        return "\n".join(f'- "{name}"' for name, _ in labels)
    return "\n".join(f'- "{name}": {description}' for name, description in labels)


def render_prompt(
    template: str, labels: Sequence[tuple[str, str]], title: str, body: str | None, describe: bool = True
) -> str:
    return "".join(render_prompt_parts(template, labels, title, body, describe))


def render_prompt_parts(
    template: str, labels: Sequence[tuple[str, str]], title: str, body: str | None, describe: bool = True
) -> tuple[str, str]:
    """(fixed prefix, issue part): the prefix is everything before the first {title} or {body}, the
    same for every issue, so an LLM can compute it once and reuse its KV cache."""
    values = {
        "labels": render_label_lines(labels, describe),
        "example": ", ".join(name for name, _ in labels[:3]),
        "title": title,
        "body": body or "",
    }
    first_issue_field = min(
        (m.start() for m in _PLACEHOLDER_RE.finditer(template) if m.group(1) in ("title", "body")), default=len(template)
    )

    def render(part: str) -> str:
        return _PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], part)

    return render(template[:first_issue_field]), render(template[first_issue_field:])

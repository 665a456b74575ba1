"""Labeling issues with teacher LLMs: `teachers` (endpoints and prompts), `run` (cached, concurrent,
budgeted annotation into a labeled file), `cache` (every answer in SQLite), `consensus` (several
teachers, one answer), `review` (low agreement to people and back), `active` (spend the teachers on
the issues a model is least sure about)."""

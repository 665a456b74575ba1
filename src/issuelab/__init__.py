"""issuelab: label GitHub issues with small, fast models trained from LLM or human labels."""

__version__ = "0.1.0"

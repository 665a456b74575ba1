"""LLM parts: the base model, the Gemma turn format, constrained decoding. Needs the 'lora' extra."""

"""Serving: text generation on vLLM with LoRA adapters."""

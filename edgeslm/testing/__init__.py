"""Helpers that build models locally (tiny family configs, tokenizers) for tests, the demo and benchmarks."""

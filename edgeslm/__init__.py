"""edgeslm: export small language models to on-device runtimes, with parity and latency reports."""

__version__ = "0.1.0"

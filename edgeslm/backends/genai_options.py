"""onnxruntime-genai's ``provider_options`` in a target file (``[onnx]`` and ``[qnn]`` sections), checked."""

from __future__ import annotations

from pathlib import Path

from edgeslm.toml_kit import bad, is_number, toml_key


def provider_options(v, path: Path, key: str, example: str) -> list[dict]:
    """onnxruntime-genai's ``session_options.provider_options``: a list of {provider: {option: "value"}} (a
    backend's option parser names its ``key``, e.g. ``SECTION.provider_options``, and an example)."""
    where = f"target file {path}"
    if not isinstance(v, list):
        raise bad(key, where, "a list of {provider = {option = \"value\"}} tables", v, example)
    out = []
    for i, entry in enumerate(v):
        if not isinstance(entry, dict) or len(entry) != 1:
            raise bad(f"{key}[{i}]", where, "a table with exactly one key, the provider's name", entry, example)
        (provider, options), = entry.items()
        at = f"{key}[{i}].{toml_key(provider)}"
        if not provider.strip():
            raise bad(f"{key}[{i}]", where, "a table keyed by a provider name", entry, example)
        if not isinstance(options, dict):
            raise bad(at, where, "a table of the provider's options", options,
                      f"{toml_key(provider)} = {{}} or {toml_key(provider)} = {{ option = \"value\" }}")
        for name, value in options.items():
            if not isinstance(value, str):
                shown = str(value).lower() if isinstance(value, bool) else value if is_number(value) else "1"
                raise bad(f"{at}.{toml_key(name)}", where,
                          "a string (onnxruntime-genai takes option values as strings)", value,
                          f'{toml_key(name)} = "{shown}"')
        out.append({provider: dict(options)})
    return out

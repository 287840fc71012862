"""The published JSON Schemas (edgeslm/schemas/*.schema.json) and validation against them."""

from __future__ import annotations

import json
from importlib import resources

SCHEMAS = {"manifest.json": "manifest", "parity.json": "parity", "latency.json": "latency", "summary.json": "report"}


def load_schema(name: str) -> dict:
    return json.loads(resources.files("edgeslm").joinpath(f"schemas/{name}.schema.json").read_text())


def problems(doc: dict, name: str) -> list[str]:
    """Schema violations of ``doc`` against schema ``name`` (manifest, parity, latency, report)."""
    import jsonschema

    return [f"{e.message} (at {'/'.join(map(str, e.absolute_path)) or 'top level'})"
            for e in jsonschema.Draft202012Validator(load_schema(name)).iter_errors(doc)]

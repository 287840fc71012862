"""The published JSON Schemas (edgeslm/schemas/*.schema.json) and validation against them.

``gate`` and ``report`` also hold what they read to ``READER_SHAPES``: the fields the readers use, with the
types they use them as. The published schemas say what a writer must write; these say what a reader needs
(e.g. a check's ``positions``, a budget's ``predicted`` as a number), so a hand-edited or truncated report is
refused with the key that is wrong instead of failing deep inside a renderer.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources

SCHEMAS = {"manifest.json": "manifest", "parity.json": "parity", "latency.json": "latency", "summary.json": "report"}


def load_schema(name: str) -> dict:
    return json.loads(resources.files("edgeslm").joinpath(f"schemas/{name}.schema.json").read_text())


def _step(p) -> str:
    """One step of a JSON path as a message shows it: plain, or quoted when it would break the line."""
    return str(p) if isinstance(p, int) or re.fullmatch(r"[\w.@ -]+", p) else json.dumps(p, ensure_ascii=False)


def _format(e) -> str:
    msg = e.message if len(e.message) <= 160 else e.message[:157] + "..."  # messages quote the bad value whole
    return f"{msg} (at {'/'.join(map(_step, e.absolute_path)) or 'top level'})"


def problems(doc: dict, name: str) -> list[str]:
    """Schema violations of ``doc`` against schema ``name`` (manifest, parity, latency, report)."""
    import jsonschema

    return [_format(e) for e in jsonschema.Draft202012Validator(load_schema(name)).iter_errors(doc)]


# --- what the readers (reports/collect, gate, html, markdown, junit) read, and as what ---------------------------

_STR = {"type": "string"}
_STR_OR_NULL = {"type": ["string", "null"]}
_NUM = {"type": "number"}  # JSON Schema numbers exclude true/false
_NUM_OR_NULL = {"type": ["number", "null"]}
_COUNT = {"type": "integer", "minimum": 0}
_STRINGS = {"type": "array", "items": _STR}
# A file named in a bundle: relative, inside it, no NUL (as the manifest schema's pattern, plus NUL).
_FILE = {"type": "string", "minLength": 1, "pattern": "^(?!/)(?!.*\\.\\.)[^\\\\\\x00]+$"}
# Metrics the gates and renderers compare or format as numbers (others are shown as they are).
_METRICS = {"type": "object", "properties": {k: _NUM_OR_NULL for k in (
    "max_abs_logit_diff", "top1_agreement", "kl_mean", "greedy_agreement", "greedy_prefix_mean", "logit_sqnr_db",
    "ppl_rise")}}
_BOUNDS = ("max_abs_logit_diff", "min_top1", "max_kl_mean", "min_greedy_prefix", "min_sqnr_db", "max_ppl_rise",
           "tie_margin")


def _obj(required: dict, optional: dict | None = None, **extra) -> dict:
    return {"type": "object", "required": list(required), "properties": {**required, **(optional or {})}, **extra}


def _if(flag: str, then: dict, otherwise: dict) -> dict:
    """``then`` where ``flag`` is true, else ``otherwise``."""
    return {"if": {"properties": {flag: {"const": True}}, "required": [flag]}, "then": then, "else": otherwise}


_DEFS = {
    "thresholds": {"type": ["object", "null"], "additionalProperties": False,
                   "properties": {**{k: _NUM_OR_NULL for k in _BOUNDS}, "informational": {"type": "boolean"}}},
    "check": _obj({"stage": _STR, "artifact": _STR_OR_NULL, "reference": {}, "candidate": {}, "prompts": _COUNT,
                   "positions": _COUNT, "greedy_tokens": _COUNT, "metrics": _METRICS,
                   "per_prompt": {"type": "array"}, "top1_by_position": {"type": "array", "items": _NUM_OR_NULL},
                   "gate": _obj({}, {"thresholds": {"$ref": "#/$defs/thresholds"}, "failures": _STRINGS,
                                     "notes": _STRINGS})},
                  {"kl_by_position": {"type": "array", "items": _NUM_OR_NULL}}),
    "validation": {**_obj({"artifact": _STR, "stage": _STR,
                           "status": {"enum": ["passed", "failed", "not_run"]}},
                          {"checks": {"type": "array", "items": _obj(
                              {"check": {}, "expected": {}, "found": {}, "passed": {"type": "boolean"}})},
                           "reason": _STR_OR_NULL})},
    "parity": _obj({"checks": {"type": "array", "items": {"$ref": "#/$defs/check"}}},
                   {"validations": {"type": "array", "items": {"$ref": "#/$defs/validation"}}}),
    "manifest": _obj({"target": _obj({"name": _STR}, {"device": _STR_OR_NULL}),
                      "model": _obj({"id": _STR}),
                      "status": {"enum": ["passed", "failed"]},
                      "artifacts": {"type": "array", "items": {"$ref": "#/$defs/artifact"}}}),
    "artifact": _obj({"file": _FILE, "bytes": _COUNT, "backend": _STR, "recipe": _STR,
                      "parity": {"enum": ["passed", "failed", "runtime_not_run"]}},
                     {"package": _FILE, "files": {"type": "array", "items": _obj({"bytes": _COUNT})},
                      "weight_bytes_by_dtype": {"type": "object", "additionalProperties": {**_NUM, "minimum": 0}}}),
    "latency": _obj({}, {
        "budgets": {"type": "array", "items": _obj({"artifact": _STR, "device": _STR_OR_NULL, "budget": _STR,
                                                    "limit": _NUM, "predicted": _NUM,
                                                    "passed": {"type": "boolean"}})},
        "measured_here": {"oneOf": [{"type": "null"}, _obj({}, {"artifacts": {
            "type": ["array", "null"], "items": {**_obj({"artifact": _STR, "measured": {"type": "boolean"}}), **_if(
                "measured", _obj({"ttft_ms": _obj({"median": _NUM}), "decode_tok_s": _obj({"median": _NUM})}),
                _obj({"reason": _STR}))}}})]},
        "predicted_on_device": {"oneOf": [{"type": "null"}, _obj({}, {"device": _STR_OR_NULL, "artifacts": {
            "type": "array", "items": {**_obj({"artifact": _STR, "predicted": {"type": "boolean"}}), **_if(
                "predicted", _obj({"device": _STR, "ttft_ms": _obj({"point": _NUM}),
                                   "decode_tok_s": _obj({"point": _NUM, "low": _NUM, "high": _NUM}),
                                   "memory_mb": _NUM}), {})}}})]}}),
    "report": _obj({"passed": {"type": "boolean"},
                    "counts": _obj({k: {} for k in ("passed", "failed", "not_run", "info")}),
                    "targets": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/target"}}}),
    "target": _obj({"target": _STR, "passed": {"type": "boolean"},
                    "artifacts": {"type": "array", "items": _obj(
                        {"name": _STR, "backend": _STR, "bytes": {**_NUM, "minimum": 0}, "parity": _STR},
                        {"recipe": _STR_OR_NULL,
                         "weight_bytes_by_dtype": {"type": "object", "additionalProperties": _NUM}})},
                    "checks": {"type": "array", "items": {"$ref": "#/$defs/row"}},
                    "parity": {"$ref": "#/$defs/parity"}},
                   {"device": _STR_OR_NULL, "status": {"enum": ["passed", "failed", "not_run", "info"]},
                    "latency": {"oneOf": [{"type": "null"}, {"$ref": "#/$defs/latency"}]}}),
    "row": _obj({"target": _STR, "artifact": _STR, "backend": _STR, "check": _STR,
                 "kind": {"enum": ["parity", "structure", "latency"]},
                 "status": {"enum": ["passed", "failed", "not_run", "info"]}, "metrics": _METRICS,
                 "message": _STR},
                {"recipe": _STR_OR_NULL}),
}
READER_SHAPES = {name: {"$ref": f"#/$defs/{name}", "$defs": _DEFS} for name in SCHEMAS.values()}


@cache
def _reader(name: str):
    import jsonschema

    return jsonschema.Draft202012Validator(READER_SHAPES[name])


def reader_problems(doc, name: str) -> list[str]:
    """Where ``doc`` lacks a field ``gate`` / ``report`` read from a ``name`` document, or has it of a type they
    cannot use (manifest, parity, latency, report)."""
    return [_format(e) for e in _reader(name).iter_errors(doc)]

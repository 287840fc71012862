"""parity.json (versioned) and parity.md, the human summary of the same figures."""

from __future__ import annotations

import json
from pathlib import Path

PARITY_SCHEMA_VERSION = "1.0"

STAGE_TITLES = {
    "reauthoring": "Re-authoring (transformers fp32 → edgeslm fp32 decoder)",
    "quantization": "Quantization (edgeslm fp32 → quantized eager)",
    "lowering": "Lowering (quantized eager → artifact in its runtime)",
    "end_to_end": "End to end (transformers fp32 → artifact in its runtime), informational",
}


def parity_document(model_id: str, target: str, checks: list[dict], validations: list[dict] = ()) -> dict:
    """``checks``: metric comparisons between two models; ``validations``: pass/fail facts (a package's structure)
    and stages that could not run here (``status: not_run`` with the reason; they never count as passed)."""
    gated = [c for c in checks if c["gate"]["thresholds"] is not None]
    return {
        "schema_version": PARITY_SCHEMA_VERSION,
        "kind": "edgeslm-parity",
        "model": model_id,
        "target": target,
        "passed": all(c["gate"]["passed"] for c in gated) and all(v["status"] != "failed" for v in validations),
        "checks": checks,
        "validations": list(validations),
        "not_run": [f"{v['artifact']} / {v['stage']}: {v['reason']}" for v in validations
                    if v["status"] == "not_run"],
    }


def _fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1e-2 or abs(x) >= 1e3 else f"{x:.4f}"


def parity_markdown(doc: dict) -> str:
    verdict = "PASSED" if doc["passed"] else "FAILED"
    lines = [
        f"# Parity: {doc['model']} → {doc['target']}: **{verdict}**",
        "",
        "Each stage compares two models on the same fixed prompts (teacher-forced logits at every position,",
        "then greedy continuations). Stages are gated apart; end-to-end is for information.",
        "",
        "| artifact | stage | max abs Δlogit | top-1 agree | mean KL | max KL | greedy agree | exact | gate |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in doc["checks"]:
        m, g = c["metrics"], c["gate"]
        gate = "—" if g["thresholds"] is None else ("pass" if g["passed"] else "**FAIL**")
        lines.append(
            f"| {c.get('artifact') or '—'} | {c['stage']} | {_fmt(m['max_abs_logit_diff'])} | "
            f"{m['top1_agreement']:.3f} | {_fmt(m['kl_mean'])} | {_fmt(m['kl_max'])} | "
            f"{m['greedy_prefix_mean']:.3f} | {m['greedy_exact']}/{c['prompts']} | {gate} |"
        )
    for v in doc.get("validations", []):
        if v["status"] == "not_run":
            continue
        lines += ["", f"## {v['artifact']}: {v['stage']} — {v['status'].upper()}", "",
                  "| check | expected | found | |", "|---|---|---|---|"]
        lines += [f"| {c['check']} | `{json.dumps(c['expected'])}` | `{json.dumps(c['found'])}` | "
                  f"{'ok' if c['passed'] else '**FAIL**'} |" for c in v["checks"]]
    if doc.get("not_run"):
        lines += ["", "## Not run on this platform (not counted as passed)", ""]
        lines += [f"- {v['artifact']} / {v['stage']}: {v['reason']}; runs on {v['runs_on']}"
                  for v in doc["validations"] if v["status"] == "not_run"]
    failures = [(c, f) for c in doc["checks"] for f in c["gate"]["failures"]]
    failures += [(v, f"{c['check']}: expected {c['expected']}, found {c['found']}") for v in doc.get("validations", [])
                 for c in v.get("checks", []) if not c["passed"]]
    if failures:
        lines += ["", "## Failures", ""]
        lines += [f"- {c.get('artifact') or 'model'} / {c['stage']}: {f}" for c, f in failures]
    lines += ["", "Greedy agree: mean fraction of the greedy tokens that match before the first divergence.", ""]
    return "\n".join(lines)


def write_parity(folder: Path, doc: dict) -> list[str]:
    (folder / "parity.json").write_text(json.dumps(doc, indent=2) + "\n")
    (folder / "parity.md").write_text(parity_markdown(doc))
    return ["parity.json", "parity.md"]

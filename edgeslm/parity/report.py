"""parity.json (versioned) and parity.md, the human summary of the same figures, written from the typed records."""

from __future__ import annotations

import json
from pathlib import Path

from edgeslm.records import Check, Status, Validation, ships, verdict

# 1.1: checks carry "status" (passed / failed / info), top1_agreement counts decisive positions only (top1_exact
# keeps the raw figure), logit SQNR, held-out perplexity, greedy ties, gate notes; runtime_agreement stage.
# 1.2: adapter stage; 1.3: non-finite logits (counted, figures null); 1.4: ``search`` (--recipe auto candidates)
PARITY_SCHEMA_VERSION = "1.4"

def parity_document(model_id: str, target: str, checks: list[Check], validations: list[Validation] = (),
                    reference: dict | None = None, search: dict | None = None) -> dict:
    """``checks``: metric comparisons between two models; ``validations``: pass/fail facts (a package's structure)
    and stages that could not run here (``status: not_run`` with the reason; they never count as passed).
    ``reference``: what the transformers reference was read from, when it is not the checkpoint as released
    (a GGUF file, dequantized: its figures measure against those weights, not the original bf16 ones).
    ``search``: artifact → its ``--recipe auto`` record (candidates tried, their stages, the one chosen)."""
    status = verdict([c.status for c in checks] + [v.status for v in validations])
    return {
        "schema_version": PARITY_SCHEMA_VERSION,
        "kind": "edgeslm-parity",
        "model": model_id,
        "target": target,
        "status": status.value,
        "passed": ships(status),
        "checks": [c.to_json() for c in checks],
        "validations": [v.to_json() for v in validations],
        "not_run": [f"{v.artifact} / {v.stage}: {v.reason}" for v in validations if v.status is Status.NOT_RUN],
        **({"reference": reference} if reference else {}),
        **({"search": search} if search else {}),
    }


def _fmt(x) -> str:
    if x is None:
        return "n/a"
    return f"{x:.3g}" if abs(x) < 1e-2 or abs(x) >= 1e3 else f"{x:.4f}"


def _pct(x) -> str:
    return "n/a" if x is None else f"{x:+.1%}"


def _num(x, fmt: str) -> str:
    return "n/a" if x is None else fmt.format(x)


GATE_WORD = {Status.PASSED: "pass", Status.FAILED: "**FAIL**", Status.INFO: "info (not gated)"}


def _reference_note(reference: dict | None) -> list[str]:
    """A line saying what the reference was read from, when it is not the checkpoint as released."""
    if not reference:
        return []
    types = ", ".join(f"{k} ×{v}" for k, v in reference["tensor_types"].items())
    return [f"Reference: transformers fp32 on the weights **dequantized** from the GGUF file `{reference['file']}` "
            f"(sha256 {reference['sha256'][:12]}…; tensors {types}): figures measure against those weights, not "
            "the original release's.", ""]


def parity_markdown(doc: dict) -> str:
    verdict_word = "PASSED" if doc["passed"] else "FAILED"
    return "\n".join([
        f"# Parity: {doc['model']} → {doc['target']}: **{verdict_word}**",
        "",
        "Each stage compares two models on the same fixed prompts (teacher-forced logits at every position,",
        "then greedy continuations) and on a fixed held-out text (perplexity). Stages are gated apart.",
        "",
        *_reference_note(doc.get("reference")),
        *parity_tables(doc),
        "",
        "Top-1 agree: over positions where the reference is decisive (its top-1 beats its top-2 by more than "
        "0.5 nats; the share of such positions in brackets). SQNR: reference logits vs the candidate's "
        "difference, centred. ppl Δ: perplexity change on the held-out text. Greedy agree: mean fraction of "
        "the greedy tokens that match before the first divergence; a divergence where the reference's own "
        "margin is within the gate's tie margin counts as agreement (ties in brackets).",
        "",
    ])


VALIDATION_WORD = {Status.PASSED: "pass", Status.FAILED: "**FAIL**", Status.NOT_RUN: "NOT RUN on this platform"}


def parity_tables(doc: dict) -> list[str]:
    """parity.md's body: one row per stage of every artifact (metric checks, then the stages that are facts
    or did not run), then the facts, what did not run, notes, the recipe search and the failures. Also what
    ``export`` prints where no terminal shows its rich table (a CI log): full names, no width to fit."""
    checks = [Check.from_json(c) for c in doc["checks"]]
    validations = [Validation.from_json(v) for v in doc.get("validations", [])]
    lines = [
        "| artifact | stage | max abs Δlogit | top-1 agree (decisive) | mean KL | SQNR dB | ppl Δ | greedy agree "
        "(ties) | exact | gate |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c, rec in zip(doc["checks"], checks):
        m = c["metrics"]
        top1 = (f"{_num(m.get('top1_agreement'), '{:.3f}')} ({_num(m['decisive_fraction'], '{:.0%}')})"
                if "decisive_fraction" in m else "—")
        greedy = f"{_num(m.get('greedy_agreement'), '{:.3f}')} ({m.get('greedy_ties', 0)})"
        lines.append(
            f"| {c.get('artifact') or '—'} | {c['stage']} | {_fmt(m.get('max_abs_logit_diff')) if 'max_abs_logit_diff' in m else '—'} | "
            f"{top1} | {_fmt(m['kl_mean']) if 'kl_mean' in m else '—'} | "
            f"{_num(m.get('logit_sqnr_db'), '{:.1f}') if 'kl_mean' in m else '—'} | {_pct(m.get('ppl_rise'))} | "
            f"{greedy} | {m['greedy_exact']}/{c['prompts']} | {GATE_WORD[rec.status]} |"
        )
    lines += [f"| {v.artifact} | {v.stage} | — | — | — | — | — | — | — | {VALIDATION_WORD[v.status]} |"
              for v in validations]
    for v in validations:
        if v.status is Status.NOT_RUN:
            continue
        lines += ["", f"## {v.artifact}: {v.stage} — {v.status.value.upper()}", "",
                  "| check | expected | found | |", "|---|---|---|---|"]
        lines += [f"| {c['check']} | `{json.dumps(c['expected'])}` | `{json.dumps(c['found'])}` | "
                  f"{'ok' if c['passed'] else '**FAIL**'} |" for c in v.checks]
    if doc.get("not_run"):
        lines += ["", "## Not run on this platform (not counted as passed)", ""]
        lines += [f"- {v.artifact} / {v.stage}: {v.reason}; runs on {v.runs_on}"
                  for v in validations if v.status is Status.NOT_RUN]
    info = [c for c in doc["checks"] if Check.from_json(c).status is Status.INFO and c["stage"] != "end_to_end"]
    if info:
        lines += ["", "## Reported, not gated (the target marks these informational)", ""]
        lines += [f"- {c.get('artifact') or 'model'} / {c['stage']}" for c in info]
    notes = [(c, n) for c in doc["checks"] for n in c["gate"].get("notes", [])]
    if notes:
        lines += ["", "## Gate notes", ""]
        lines += [f"- {c.get('artifact') or 'model'} / {c['stage']}: {n}" for c, n in notes]
    lines += _search_lines(doc.get("search") or {})
    failures = [(c, f) for c in doc["checks"] for f in c["gate"]["failures"]]
    failures += [(v, f"{c['check']}: expected {c['expected']}, found {c['found']}") for v in doc.get("validations", [])
                 for c in v.get("checks", []) if not c["passed"]]
    if failures:
        lines += ["", "## Failures", ""]
        lines += [f"- {c.get('artifact') or 'model'} / {c['stage']}: {f}" for c, f in failures]
    return lines


def _search_lines(search: dict) -> list[str]:
    """The ``--recipe auto`` candidates of each searched artifact, smallest first, and why the chosen one won."""
    lines = []
    for artifact, rec in search.items():
        lines += ["", f"## Recipe search: {artifact} ({rec['seconds']:.0f} s)", "",
                  "| candidate | predicted MB | MB | stage | top-1 | KL | SQNR | ppl Δ | outcome |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for c in rec["candidates"]:
            mb = "n/a" if c["bytes"] is None else f"{c['bytes'] / 1e6:.1f}"
            for stage, m in c["stages"].items() or [("none", {})]:
                lines.append(f"| {c['recipe']} | {c['predicted_bytes'] / 1e6:.1f} | {mb} | {stage} "
                             f"| {_num(m.get('top1_agreement'), '{:.3f}')} | {_fmt(m.get('kl_mean'))} "
                             f"| {_num(m.get('logit_sqnr_db'), '{:.1f} dB')} | {_pct(m.get('ppl_rise'))} "
                             f"| {c['outcome'] if stage == list(c['stages'] or ['none'])[-1] else ''} |")
    return lines


def write_parity(folder: Path, doc: dict) -> list[str]:
    (folder / "parity.json").write_text(json.dumps(doc, indent=2) + "\n")
    (folder / "parity.md").write_text(parity_markdown(doc))
    return ["parity.json", "parity.md"]

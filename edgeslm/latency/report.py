"""latency.json (versioned): what was measured on this machine and what the performance model predicts on the
target device, labelled apart, plus the latency budgets of the target and whether they hold.

Budgets (``[latency]`` in a target file) are checked on the *predicted* figures for the target device, on the
pessimistic end of the range: a budget passes only if even the slow end of the prediction meets it.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from edgeslm.manifest import read_manifest
from edgeslm.records import artifact_name
from edgeslm.latency.devices import Device, load_device
from edgeslm.latency.perf import ASSUMPTIONS, predict
from edgeslm.latency.workload import from_artifact, require_shape
from edgeslm.records import CONTEXT_BUDGET, Budget, ExportCost, Latency, Manifest, Measured, Predicted
from edgeslm.latency.bench import bench_bundle
from edgeslm.latency.host import host_facts

# 1.1: peak_rss_mib is the artifact's cost above the runtime baseline; 1.2: export_cost (forecast vs measured)
LATENCY_SCHEMA_VERSION = "1.2"
LATENCY_FILE = "latency.json"
BUDGET_KEYS = ("max_ttft_ms", "min_prefill_tok_s", "min_decode_tok_s", "max_memory_mb")


def predict_bundle(bundle: Path, device: Device, prompt_len: int, gen_len: int, manifest: dict | None = None) \
        -> list[dict]:
    """Every artifact the device profile has figures for, predicted on that device (``manifest``: the bundle's,
    when the caller holds it; else read from ``bundle``)."""
    m = manifest if manifest is not None else read_manifest(bundle)
    require_shape(m, bundle)
    out = []
    for art in m["artifacts"]:
        name = artifact_name(art)
        if art["backend"] not in device.backends:
            out.append({"artifact": name, "backend": art["backend"], "predicted": False,
                        "reason": f"device {device.name} has no figures for {art['backend']}"})
            continue
        w = from_artifact(m, art)
        if w.kind not in device.perf(art["backend"]).bandwidth_efficiency:
            out.append({"artifact": name, "backend": art["backend"], "predicted": False,
                        "reason": f"device {device.name} has no {w.kind} kernel figures for {art['backend']}"})
            continue
        out.append({"artifact": name, "recipe": art["recipe"], "predicted": True,
                    **predict(w, device, art["backend"], prompt_len, gen_len)})
    return out


def check_budgets(budgets: dict, predicted: list[dict]) -> list[Budget]:
    """One entry per (artifact, budget): the pessimistic end of the predicted range against the budget."""
    rows = []
    for p in (p for p in predicted if p["predicted"]):
        worst = {"max_ttft_ms": p["ttft_ms"]["high"], "min_prefill_tok_s": p["prefill_tok_s"]["low"],
                 "min_decode_tok_s": p["decode_tok_s"]["low"], "max_memory_mb": p["memory_mb"]}
        for key, limit in budgets.items():
            value = worst[key]
            ok = value <= limit if key.startswith("max_") else value >= limit
            rows.append(Budget(p["artifact"], p["device"], key, limit, value, ok))
        limit_gb = p["inputs"].get("max_context_gb")
        if limit_gb:  # the accelerator's own limit: checked whatever the target's budgets say
            rows.append(Budget(p["artifact"], p["device"], CONTEXT_BUDGET, limit_gb * 1e3, p["memory_mb"],
                               p["over_limit"] is None, p["over_limit"]))
    return rows


def latency_document(bundle: str, measured: list[dict] | None, host: dict | None, device: Device | None,
                     predicted: list[dict], budgets: dict, settings: dict, cost: ExportCost | None = None) -> Latency:
    return Latency(LATENCY_SCHEMA_VERSION, datetime.now(timezone.utc).isoformat(timespec="seconds"), bundle,
                   settings, host, [Measured.from_json(m) for m in measured] if measured is not None else None,
                   device.name if device else None, device.description if device else None,
                   [Predicted.from_json(p) for p in predicted], ASSUMPTIONS, check_budgets(budgets, predicted),
                   export_cost=cost)


def latency_for_export(folder: Path, label: str, target, status: Callable[[str], None], prompt_len: int = 64,
                       gen_len: int = 32, bench: bool = True, manifest: Manifest | None = None,
                       cost: ExportCost | None = None) -> Latency:
    """What export writes: a short bench of every artifact here + the target device's prediction + budgets,
    and the export's ``cost`` against its forecast. ``manifest``: the bundle's record, before it is written
    (prediction reads it; the bench's runtimes load the bundle as an app does, manifest.json included)."""
    m = manifest.to_json() if manifest is not None else read_manifest(folder)
    ctx = m["context_length"]
    prompt_len = min(prompt_len, ctx // 2)
    gen_len = min(gen_len, ctx - prompt_len)
    measured = bench_bundle(folder, prompt_len, gen_len, warmup=1, repeats=3, status=status) if bench else None
    device = load_device(target.device) if target.device else None
    budget_p, budget_g = target.latency.get("prompt_len", 128), target.latency.get("gen_len", 128)
    predicted = predict_bundle(folder, device, budget_p, budget_g, m) if device else []
    budgets = {k: v for k, v in target.latency.items() if k in BUDGET_KEYS}
    settings = {"measured": {"prompt_len": prompt_len, "gen_len": gen_len, "warmup": 1, "repeats": 3},
                "predicted": {"prompt_len": budget_p, "gen_len": budget_g}}
    return latency_document(label, measured, host_facts() if bench else None, device, predicted, budgets, settings,
                            cost)


def write_latency(folder: Path, doc: Latency) -> list[str]:
    (folder / LATENCY_FILE).write_text(json.dumps(doc.to_json(), indent=2) + "\n")
    return [LATENCY_FILE]


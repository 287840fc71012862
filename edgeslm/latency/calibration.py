"""Fit the device profiles' efficiency factors to published on-device figures, and check the model on the figures
it was not fitted to (``published.toml``; table in docs/latency.md, printed by benchmarks/latency_calibration.py).

A factor is the geometric mean, over the fitted points of one (device, backend, kernel kind), of the value that
would reproduce each point exactly. The device files carry the fitted numbers; a test re-derives them from here.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from importlib import resources

from edgeslm.latency.devices import Device, load_device
from edgeslm.latency.perf import decode_seconds, prefill_flops, prefill_seconds
from edgeslm.latency.workload import Workload, from_shape, linear_params

GEN_LEN = 1  # published decode rates are per step, around the end of a short prompt


def published() -> tuple[dict, list[dict]]:
    data = tomllib.loads(resources.files("edgeslm.latency").joinpath("published.toml").read_text())
    return data["shapes"], data["points"]


def point_workload(point: dict, shapes: dict) -> Workload:
    """The workload of a published model as it was measured (bytes from its file size or bits per weight)."""
    ctx = point.get("prompt_len", 64) + 128
    if "params" in point:  # architecture not published: bytes and FLOPs from the weight count alone
        n = point["params"]
        return Workload(point["kind"], n * point["bits_per_weight"] / 8, n * point["bits_per_weight"] / 8, 0.0,
                        2.0 * n, 0.0, ctx, 0.0)
    shape = shapes[point["shape"]]
    table = shape["vocab_size"] * shape["hidden_size"]
    embed = table * point["embed_bits"] / 8
    if "file_mib" in point:
        weight = point["file_mib"] * 2**20
    else:
        weight = linear_params(shape) * point["bits_per_weight"] / 8 + embed
    return from_shape(shape, weight, embed, 2, point["kind"], ctx)


def implied(point: dict, w: Workload, device: Device) -> dict:
    """The efficiency and prefill throughput that would reproduce this point exactly."""
    p = point.get("prompt_len", 64)
    bytes_step = w.streamed_bytes + w.kv_bytes_per_position * p
    overhead = device.perf(point["backend"]).step_overhead_us * 1e-6
    eff = bytes_step / (device.memory_bandwidth_gb_s * 1e9 * (1 / point["decode_tok_s"] - overhead))
    out = {"bandwidth_efficiency": eff}
    if "prefill_tok_s" in point:  # compute-bound: the prompt's FLOPs over its measured time
        out["prefill_gflops"] = prefill_flops(w, p) / (p / point["prefill_tok_s"]) / 1e9
    return out


def fit(leave_out: str | None = None) -> dict:
    """{(device, backend, kind): {"bandwidth_efficiency": x, "prefill_gflops": y}} from the fitted points (all of
    them, or all but the point with id ``leave_out``)."""
    shapes, points = published()
    values: dict[tuple, dict[str, list[float]]] = {}
    for pt in points:
        if not pt["fit"] or pt["id"] == leave_out:
            continue
        got = implied(pt, point_workload(pt, shapes), load_device(pt["device"]))
        if pt["fit"] == "prefill":  # this point fits the prefill throughput only
            got = {"prefill_gflops": got["prefill_gflops"]}
        slot = values.setdefault((pt["device"], pt["backend"], pt["kind"]), {})
        for k, v in got.items():
            slot.setdefault(k, []).append(v)
    return {key: {k: math.exp(sum(map(math.log, v)) / len(v)) for k, v in slot.items()}
            for key, slot in values.items()}


def _refitted(device: Device, backend: str, kind: str, factors: dict) -> Device:
    """``device`` with one (backend, kind)'s efficiency factors replaced by ``factors``."""
    perf = device.perf(backend)
    changes = {k: {**getattr(perf, k), kind: v} for k, v in factors.items()}
    return dataclasses.replace(device, backends={**device.backends, backend: dataclasses.replace(perf, **changes)})


def leave_one_out() -> list[dict]:
    """Each fitted point predicted by a profile fitted without it: the model's error on a figure it was not fitted
    to. Points that are alone in their (device, backend, kind) group cannot be left out (nothing is left to fit):
    they are skipped here and checked through :func:`evaluate`'s held-back points instead."""
    shapes, points = published()
    rows = []
    for pt in points:
        key = (pt["device"], pt["backend"], pt["kind"])
        if not pt["fit"] or key not in (refit := fit(leave_out=pt["id"])):
            continue
        device = _refitted(load_device(pt["device"]), pt["backend"], pt["kind"], refit[key])
        rows.append(_row(pt, point_workload(pt, shapes), device))
    return rows


def evaluate() -> list[dict]:
    """Every published point predicted with the shipped device profiles: error in %."""
    shapes, points = published()
    return [_row(pt, point_workload(pt, shapes), load_device(pt["device"])) for pt in points]


def _row(pt: dict, w: Workload, device: Device) -> dict:
    """One published point against its prediction on ``device``."""
    p = pt.get("prompt_len", 64)
    decode = GEN_LEN / decode_seconds(w, device, pt["backend"], p, GEN_LEN)
    row = {"id": pt["id"], "device": pt["device"], "backend": pt["backend"], "kind": pt["kind"],
           "fit": pt["fit"], "source": pt["source"], "published_decode": pt["decode_tok_s"],
           "predicted_decode": decode, "decode_error": decode / pt["decode_tok_s"] - 1}
    if "prefill_tok_s" in pt:
        prefill = p / prefill_seconds(w, device, pt["backend"], p)
        row.update(published_prefill=pt["prefill_tok_s"], predicted_prefill=prefill,
                   prefill_error=prefill / pt["prefill_tok_s"] - 1)
    return row

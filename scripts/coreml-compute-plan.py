#!/usr/bin/env python3
"""Where Core ML places each op of a package: MLComputePlan (macOS 14.4+, coremltools >= 8.1). Run by the macOS
workflow on the ios-ane demo package; writes compute_plan.json (per-op preferred device, counts) and prints the
counts. On Linux Core ML cannot plan, so edgeslm's ANE readiness there is structural (edgeslm/backends/coreml/ane.py).
GitHub's macOS runners are VMs: if no Neural Engine device is listed, the plan says nothing about the ANE.

usage: scripts/coreml-compute-plan.py PACKAGE.mlpackage
"""
import collections, json, sys
import coremltools as ct
from coremltools.models.compute_plan import MLComputePlan
from coremltools.models.compute_device import (MLCPUComputeDevice, MLGPUComputeDevice,
                                               MLNeuralEngineComputeDevice)

pkg = sys.argv[1]                                   # e.g. out/demo-ios/model-int4.mlpackage
compiled = ct.models.utils.compile_model(pkg)       # -> path of the .mlmodelc
devices = ct.models.compute_device.MLComputeDevice.get_all_compute_devices()
print("devices:", [type(d).__name__ for d in devices])  # no MLNeuralEngineComputeDevice in a VM (GitHub runners)
plan = MLComputePlan.load_from_path(compiled, compute_units=ct.ComputeUnit.ALL)
name = lambda d: {MLNeuralEngineComputeDevice: "ANE", MLGPUComputeDevice: "GPU",
                  MLCPUComputeDevice: "CPU"}.get(type(d), type(d).__name__)
rows, counts = [], collections.Counter()
for fn_name, fn in plan.model_structure.program.functions.items():
    for op in fn.block.operations:
        if op.operator_name in ("const",) or op.operator_name.startswith("constexpr_"):
            continue
        usage = plan.get_compute_device_usage_for_mlprogram_operation(op)
        dev = name(usage.preferred_compute_device) if usage else "unknown"
        cost = plan.get_estimated_cost_for_mlprogram_operation(op)
        counts[dev] += 1
        rows.append({"function": fn_name, "op": op.operator_name,
                     "output": op.outputs[0].name if op.outputs else "",
                     "preferred": dev,
                     "supported": [name(d) for d in usage.supported_compute_devices] if usage else [],
                     "cost_weight": cost.weight if cost else None})
json.dump({"counts": dict(counts), "ops": rows}, open("compute_plan.json", "w"), indent=1)
print(dict(counts))
off = collections.Counter(r["op"] for r in rows if r["preferred"] != "ANE")
print("not on ANE:", dict(off))

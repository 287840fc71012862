"""fp32 ONNX → QDQ ONNX for the QNN execution provider, with onnxruntime's own QNN tooling.

``qnn_preprocess_model`` (fusions the HTP prefers) then ``get_qnn_qdq_config`` + ``quantize``: activations get
static 16-bit ranges calibrated on text; weights get the recipe's bits per layer, per output channel, symmetric
(the forms the HTP runs). The QDQ graph runs on onnxruntime's CPU EP with the same integer rounding and clipping
the NPU applies, which is how edgeslm measures the NPU's numerics without one.
"""

from __future__ import annotations

import ast
from pathlib import Path

from edgeslm.quant.recipes import Rule
from edgeslm.errors import InternalError

# Weight bits → onnxruntime QuantType name (symmetric signed, per output channel).
WEIGHT_TYPES = {"16a4w": "QInt4", "16a8w": "QInt8"}


def module_weights(model) -> dict[str, tuple[str, str]]:
    """Decoder module name (``layers.0.mlp.up_proj``) → (weight initializer, op type), read from the name scopes
    torch.onnx records on each node: the exporter renames initializers, the scopes keep the module path."""
    inits = {i.name for i in model.graph.initializer}
    out: dict[str, tuple[str, str]] = {}
    for node in model.graph.node:
        if node.op_type not in ("MatMul", "Gather"):
            continue
        scopes = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), None)
        weight = next((i for i in node.input if i in inits), None)
        if not scopes or weight is None:
            continue
        modules = [s for s in ast.literal_eval(scopes) if s.startswith("decoder.")]
        if modules:
            out[modules[-1].removeprefix("decoder.")] = (weight, node.op_type)
    return out


def weight_overrides(model, chosen: dict[str, Rule]) -> dict[str, list[dict]]:
    """Tensor-level overrides giving each planned linear weight its recipe's type, per output channel, symmetric.
    The embedding table (a Gather) keeps the quantizer's default for the QNN EP: uint8, per tensor."""
    from onnxruntime.quantization import QuantType

    found = {fqn: w for fqn, (w, op) in module_weights(model).items() if op == "MatMul"}
    missing = sorted(f for f in chosen if f not in found and f != "embed_tokens")
    if missing:
        raise InternalError(f"the ONNX graph has no weight for {', '.join(missing[:3])} (name scopes changed?)")
    return {found[fqn]: [{"quant_type": getattr(QuantType, WEIGHT_TYPES[rule.scheme]), "axis": 1, "symmetric": True}]
            for fqn, rule in chosen.items() if fqn in found}


class FeedsReader:
    """onnxruntime's CalibrationDataReader over recorded input feeds."""

    def __init__(self, feeds: list[dict]):
        self.feeds = iter(feeds)

    def get_next(self):
        return next(self.feeds, None)


def quantize_graphs(src: Path, dst: Path, feeds: tuple[list[dict], list[dict]], chosen: dict[str, Rule]) -> dict:
    """QDQ-quantize ctx.onnx and iter.onnx of ``src`` into ``dst`` (each with the feeds recorded while the fp32
    graphs ran the calibration text); returns facts for the manifest."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize
    from onnxruntime.quantization.execution_providers.qnn import (
        get_qnn_qdq_config,
        qnn_preprocess_model,
    )

    class Reader(FeedsReader, CalibrationDataReader):
        pass

    facts = {}
    for name, graph_feeds in zip(("ctx", "iter"), feeds):
        fp32, out = src / f"{name}.onnx", dst / f"{name}.onnx"
        pre = dst / f"{name}.preprocessed.onnx"
        changed = qnn_preprocess_model(str(fp32), str(pre), save_as_external_data=True,
                                       external_data_location=pre.name + ".data")
        model_path = pre if changed else fp32
        overrides = weight_overrides(onnx.load(str(model_path), load_external_data=False), chosen)
        config = get_qnn_qdq_config(str(model_path), Reader(graph_feeds), activation_type=QuantType.QUInt16,
                                    weight_type=QuantType.QUInt8, init_overrides=overrides)
        config.use_external_data_format = True
        quantize(str(model_path), str(out), config)
        for f in (pre, pre.with_name(pre.name + ".data")):
            f.unlink(missing_ok=True)
        q = onnx.load(str(out), load_external_data=False)
        ops: dict[str, int] = {}
        for n in q.graph.node:
            ops[n.op_type] = ops.get(n.op_type, 0) + 1
        facts[name] = {"calibration_feeds": len(graph_feeds), "preprocessed": bool(changed),
                       "quantize_ops": ops.get("QuantizeLinear", 0), "dequantize_ops": ops.get("DequantizeLinear", 0)}
    return facts

"""Quantize the re-authored decoder with ExecuTorch's Qualcomm quantizer (PT2E), and lower it to a QNN .pte.

Flow: ``torch.export`` (non-strict, plain torch ops: ``use_custom_ops=False``) → ``prepare_pt2e`` with
:class:`QnnQuantizer` driven by a ``QuantRecipe`` → calibration (the prompts run through the prepared graph, the
KV cache mutated in place as in eager) → ``convert_pt2e``. The converted graph is a quant-dequant ("fake quant")
GraphModule: called like the decoder, ``model(tokens [1, L] int64, input_pos [L] int64) -> logits [1, vocab]``,
it runs in eager PyTorch with the scales, zero points and integer ranges the HTP will use, so parity can be
measured on this machine before any device or SDK is involved.

Shapes: the HTP wants static shapes, so by default the graph is exported for one decode step (``seq_len=1``); the
prompts are then calibrated and scored one token at a time, which is exactly the decode path. ``seq_len=None``
exports with a dynamic length (prefill in one call, handy for quick eager checks; not lowerable as it is).

Schemes (weights / activations): ``16a4w`` (4-bit per-channel weights, 16-bit activations), ``16a8w``,
``16a4w_block`` (LPBQ: 4-bit weights per block of ``block_size`` input channels, per-channel 8-bit scales of the
block scales; needs V69+ HTP), ``8a8w`` and ``16a16w``. ``sensitive`` names modules (``lm_head``, ``layers.0``,
``layers.-1`` for the last block) whose linear layers get ``sensitive_scheme`` instead (16a8w by default).

Lowering (:func:`lower`) needs the Qualcomm AI Engine Direct (QNN) SDK on the host: ``QNN_SDK_ROOT`` set and its
x86_64 libraries loadable. :func:`lowering_unavailable` says why not, without side effects.
"""

from __future__ import annotations

import os
import re
import time
from contextlib import contextmanager
from pathlib import Path

import torch

SCHEMES = ("16a4w", "16a8w", "16a4w_block", "8a8w", "16a16w")
DEFAULT_SENSITIVE = ("lm_head", "layers.0", "layers.-1")


class QnnUnavailable(RuntimeError):
    """Lowering to QNN cannot run on this host; ``str(e)`` says why and what to install."""


@contextmanager
def _no_sdk_download():
    """``QnnQuantizer()`` (through ``get_backend_opinfo``) calls ``setup_qnn_sdk()``, which on Linux x86 with
    ``QNN_SDK_ROOT`` unset *downloads* libc++ and the multi-GB QNN SDK. Quantizing needs no SDK (the op-info
    validation it would load is optional), so ``QNN_SDK_ROOT`` is set to empty while the quantizer is built: an
    empty value means "the caller manages the SDK" to executorch, and nothing is fetched."""
    had = "QNN_SDK_ROOT" in os.environ
    if not had:
        os.environ["QNN_SDK_ROOT"] = ""
    try:
        yield
    finally:
        if not had:
            os.environ.pop("QNN_SDK_ROOT", None)


def _dtype(scheme: str):
    from executorch.backends.qualcomm.quantizer.quantizer import QuantDtype

    if scheme not in SCHEMES:
        raise ValueError(f"unknown QNN scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    return getattr(QuantDtype, f"use_{scheme}")


def sensitive_linears(decoder: torch.nn.Module, sensitive) -> list[str]:
    """Names of the ``nn.Linear`` modules under the given module names (``layers.-1`` is the last block)."""
    n_layers = len(getattr(decoder, "layers", ()))
    prefixes = []
    for name in sensitive or ():
        m = re.fullmatch(r"layers\.(-?\d+)(\..*)?", name)
        if m:
            i = int(m.group(1))
            name = f"layers.{i % n_layers if n_layers else i}{m.group(2) or ''}"
        prefixes.append(name)
    linears = [n for n, mod in decoder.named_modules() if isinstance(mod, torch.nn.Linear)]
    chosen = [n for n in linears if any(n == p or n.startswith(p + ".") for p in prefixes)]
    unknown = [p for p in prefixes if not any(n == p or n.startswith(p + ".") for n in linears)]
    if unknown:
        raise ValueError(f"sensitive modules {unknown} hold no linear layer of this decoder")
    return chosen


def make_quantizer(decoder: torch.nn.Module, scheme: str = "16a4w", sensitive=(), sensitive_scheme: str = "16a8w",
                   block_size: int = 32, soc: str = "SM8650", observer=None):
    """A :class:`QnnQuantizer` with a ``QuantRecipe``: activations and non-linear ops per tensor at the
    scheme's activation width, linear weights per channel (or per block), the sensitive linears at
    ``sensitive_scheme`` (per channel). MinMax observers, as Qualcomm's own LLM recipes use."""
    from executorch.backends.qualcomm.quantizer.quant_recipe import (
        QuantGranularity,
        QuantRecipe,
    )
    from executorch.backends.qualcomm.quantizer.quantizer import QnnQuantizer
    from executorch.backends.qualcomm.serialization.qc_schema import (
        QcomChipset,
        QnnExecuTorchBackendType,
    )
    from torchao.quantization.pt2e import MinMaxObserver

    obs = observer or MinMaxObserver
    dtype = _dtype(scheme)
    linear = {torch.ops.aten.linear.default}
    recipe = QuantRecipe(dtype, False, act_observer=obs, granularity=QuantGranularity.PER_TENSOR,
                         note=f"default {scheme}")
    if scheme == "16a4w_block":
        for name, mod in decoder.named_modules():
            if isinstance(mod, torch.nn.Linear) and mod.in_features % block_size:
                raise ValueError(f"{name}: in_features {mod.in_features} is not a multiple of block_size {block_size}")
        recipe.add_node_target(linear, dtype, False, act_observer=obs, granularity=QuantGranularity.PER_BLOCK,
                               extra_kwargs={"block_size": (1, block_size)}, note=f"LPBQ block {block_size}")
    else:
        recipe.add_node_target(linear, dtype, False, act_observer=obs, granularity=QuantGranularity.PER_CHANNEL,
                               note="linear weights per channel")
    names = sensitive_linears(decoder, sensitive)
    if names:
        # Anchored on each linear's full module path: only the linear op itself matches (a looser pattern such as
        # "layers\.0\." would also catch norms and adds, and PER_CHANNEL asserts on ops without weights).
        recipe.add_regex({rf"^{re.escape(n)}$" for n in names}, _dtype(sensitive_scheme), False, act_observer=obs,
                         granularity=QuantGranularity.PER_CHANNEL, priority=2, note=f"sensitive: {sensitive_scheme}")
    with _no_sdk_download():
        quantizer = QnnQuantizer(backend=QnnExecuTorchBackendType.kHtpBackend, soc_model=getattr(QcomChipset, soc))
    quantizer.set_recipe(recipe)
    return quantizer, names


def export_decoder(decoder: torch.nn.Module, seq_len: int | None = 1, finite_mask: bool = True):
    """``torch.export`` (non-strict) at a static length (the HTP's shape), or a dynamic one when ``None``. The
    KV caches stay in-place ``index_put_`` on module buffers in ``ep.module()``, which PT2E keeps as they are.
    ``finite_mask``: see ``Decoder.use_finite_mask`` (on by default: it is what makes 16-bit attention accurate;
    it switches ``decoder`` itself)."""
    if getattr(decoder, "full_logits", False):
        raise ValueError("export with full_logits off: the QNN graph returns the last position's logits")
    if seq_len is None:
        from torch.export import Dim

        seq = Dim("seq_len", min=1, max=decoder.spec.max_seq_len - 1)
        example = (torch.zeros(1, 2, dtype=torch.long), torch.arange(2, dtype=torch.long))
        shapes = ({1: seq}, {0: seq})
    else:
        example = (torch.zeros(1, seq_len, dtype=torch.long), torch.arange(seq_len, dtype=torch.long))
        shapes = None
    decoder.use_rope_tables()  # position-independent activation ranges (see Decoder.use_rope_tables)
    if finite_mask:
        decoder.use_finite_mask()
    with torch.no_grad():
        return torch.export.export(decoder, example, dynamic_shapes=shapes, strict=False)


def run_sequence(model, ids: list[int], seq_len: int | None = 1, collect: bool = False):
    """Run ``ids`` from position 0 through a graph exported at ``seq_len`` (one token per call when 1, one call
    when ``None``); returns the stacked last-position logits of each call when ``collect``."""
    out = []
    with torch.no_grad():
        if seq_len is None:
            logits = model(torch.tensor([ids]), torch.arange(len(ids)))
            out.append(logits)
        else:
            if len(ids) % seq_len:
                raise ValueError(f"a {seq_len}-token graph needs sequences of a multiple of {seq_len} tokens")
            for s in range(0, len(ids), seq_len):
                logits = model(torch.tensor([ids[s:s + seq_len]]), torch.arange(s, s + seq_len))
                if collect:
                    out.append(logits)
    return torch.cat(out) if collect else None


def quantize(decoder: torch.nn.Module, calibration: list[list[int]], scheme: str = "16a4w", sensitive=(),
             sensitive_scheme: str = "16a8w", block_size: int = 32, seq_len: int | None = 1, soc: str = "SM8650",
             observer=None, finite_mask: bool = True) -> torch.fx.GraphModule:
    """The decoder quantized for the HTP, as a quant-dequant GraphModule called like the decoder.

    ``calibration``: token-id sequences, each run from position 0 (at most ``max_seq_len`` tokens each).
    ``sensitive``: module names whose linears use ``sensitive_scheme`` (e.g. ``DEFAULT_SENSITIVE``).
    Timings (s) are in ``model.qnn_timings``; the plan in ``model.qnn_plan``."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    if not calibration or not any(calibration):
        raise ValueError("calibration needs at least one non-empty token sequence")
    limit = decoder.spec.max_seq_len
    t0 = time.perf_counter()
    quantizer, names = make_quantizer(decoder, scheme, sensitive, sensitive_scheme, block_size, soc, observer)
    ep = export_decoder(decoder, seq_len, finite_mask)
    t1 = time.perf_counter()
    prepared = prepare_pt2e(ep.module(), quantizer)
    t2 = time.perf_counter()
    for ids in calibration:
        ids = list(ids)[:limit if seq_len is None else limit - limit % seq_len]
        if seq_len not in (None, 1):
            ids = ids[:len(ids) - len(ids) % seq_len]
        if ids:
            run_sequence(prepared, ids, seq_len)
    t3 = time.perf_counter()
    model = convert_pt2e(prepared)
    t4 = time.perf_counter()
    model.qnn_timings = {"export": t1 - t0, "prepare": t2 - t1, "calibrate": t3 - t2, "convert": t4 - t3}
    model.qnn_plan = {"scheme": scheme, "block_size": block_size if scheme == "16a4w_block" else None,
                      "sensitive": {n: sensitive_scheme for n in names}, "seq_len": seq_len, "soc": soc,
                      "finite_mask": finite_mask}
    return model


# ---------------------------------------------------------------------------------------------------------------
# Lowering


def _sdk_lib_dir(root: str) -> Path:
    return Path(root) / "lib" / "x86_64-linux-clang"


def lowering_unavailable() -> str | None:
    """None when QNN lowering can run here, else the reason (no side effects: nothing downloaded)."""
    root = os.environ.get("QNN_SDK_ROOT")
    if not root:
        return ("QNN_SDK_ROOT is not set: lowering to a QNN .pte compiles the graph with the Qualcomm AI Engine "
                "Direct SDK (libQnnHtp.so, libQnnSystem.so) on the host; install it (softwarecenter.qualcomm.com, "
                "QNN/QAIRT 2.x matching executorch's build) and export QNN_SDK_ROOT and "
                "LD_LIBRARY_PATH=$QNN_SDK_ROOT/lib/x86_64-linux-clang")
    libdir = _sdk_lib_dir(root)
    missing = [f for f in ("libQnnHtp.so", "libQnnSystem.so") if not (libdir / f).exists()]
    if missing:
        return f"QNN_SDK_ROOT={root} lacks {', '.join(missing)} under {libdir}"
    try:
        from executorch.backends.qualcomm.python import PyQnnManagerAdaptor  # noqa: F401
    except Exception as e:  # noqa: BLE001
        return f"executorch's QNN adaptor (PyQnnManagerAdaptor) does not import: {e}"
    import ctypes

    try:
        ctypes.CDLL(str(libdir / "libQnnHtp.so"))
    except OSError as e:
        return f"the QNN HTP library does not load: {e}"
    return None


def compiler_specs(soc: str = "SM8650"):
    """Compile specs for the HTP of ``soc`` (a ``QcomChipset`` name: SM8550, SM8650, SM8750, ...)."""
    from executorch.backends.qualcomm.serialization.qc_schema import QcomChipset
    from executorch.backends.qualcomm.utils.utils import (
        generate_htp_compiler_spec,
        generate_qnn_executorch_compiler_spec,
    )

    return generate_qnn_executorch_compiler_spec(
        soc_model=getattr(QcomChipset, soc),
        backend_options=generate_htp_compiler_spec(use_fp16=False),
    )


def lower(model: torch.fx.GraphModule, out: Path, seq_len: int = 1, soc: str | None = None,
          metadata: dict | None = None, check: bool = True) -> dict:
    """Lower the converted (quant-dequant) graph to a QNN-delegated .pte at ``out``; returns facts for a manifest.
    Raises :class:`QnnUnavailable` with the reason when the SDK is not usable here (``check``)."""
    if check and (reason := lowering_unavailable()):
        raise QnnUnavailable(reason)
    from executorch.backends.qualcomm.utils.utils import (
        to_edge_transform_and_lower_to_qnn,
    )
    from executorch.exir import ExecutorchBackendConfig
    from executorch.exir.passes import MemoryPlanningPass

    plan = getattr(model, "qnn_plan", {})
    soc = soc or plan.get("soc", "SM8650")
    if plan.get("seq_len", seq_len) is None:
        raise ValueError("a dynamic-length graph cannot be lowered to the HTP: quantize with a static seq_len")
    example = (torch.zeros(1, seq_len, dtype=torch.long), torch.arange(seq_len, dtype=torch.long))
    edge = to_edge_transform_and_lower_to_qnn(model, example, compiler_specs(soc), constant_methods=metadata)
    graph = edge.exported_program().graph
    delegated = sum(1 for n in graph.nodes if n.op == "call_function" and "call_delegate" in str(n.target))
    left = sorted({str(n.target) for n in graph.nodes if n.op == "call_function"
                   and "call_delegate" not in str(n.target) and "getitem" not in str(n.target)})
    prog = edge.to_executorch(ExecutorchBackendConfig(
        memory_planning_pass=MemoryPlanningPass(alloc_graph_input=False, alloc_graph_output=False)))
    Path(out).write_bytes(prog.buffer)
    return {"delegate": "qnn", "soc": soc, "qnn_partitions": delegated, "cpu_ops": left}

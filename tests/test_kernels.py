"""oneDNN's fp32 linear in the parity passes (edgeslm/parity/kernels.py): the same numbers as F.linear to fp32
rounding, rows independent of how many share a call, the model restored for export afterwards, and anything that
is not a plain fp32 weight left to F.linear."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from edgeslm.parity.kernels import _onednn, linear, onednn_linears
from edgeslm.parity.models import EagerDecoder, HFModel

ROOT = Path(__file__).resolve().parent.parent


def test_linear_matches_f_linear_and_rows_do_not_depend_on_the_batch():
    g = torch.Generator().manual_seed(0)
    w, b = torch.randn(300, 96, generator=g), torch.randn(300, generator=g)
    x = torch.randn(4, 40, 96, generator=g)
    assert _onednn() is not None  # CI's x86 torch has it; the fallback is tested below
    with torch.no_grad():
        y = linear(x, w, b)
        torch.testing.assert_close(y, F.linear(x, w, b), rtol=1e-5, atol=1e-5)
        flat = linear(x.reshape(-1, 96), w, b)
        assert torch.equal(flat[8:16], linear(x.reshape(-1, 96)[8:16], w, b))  # 8 rows alone = 8 rows of 160
        assert torch.equal(linear(x[:, ::2], w, b), linear(x[:, ::2].contiguous(), w, b))  # strided input


def test_autograd_and_other_dtypes_stay_on_f_linear(monkeypatch):
    w = torch.randn(8, 4)
    calls = []
    real = _onednn()
    monkeypatch.setattr("edgeslm.parity.kernels._onednn", lambda: lambda *a: calls.append(a) or real(*a))
    linear(torch.randn(2, 4), w)  # grad enabled: F.linear
    with torch.no_grad():
        linear(torch.randn(2, 4, dtype=torch.bfloat16), w.bfloat16())
        assert not calls
        linear(torch.randn(2, 4), w)
    assert len(calls) == 1


def test_swap_is_scoped_and_shares_the_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8, bias=False))
    x = torch.randn(3, 16)
    with torch.no_grad():
        before = model(x)
        with onednn_linears(model):
            assert all("forward" in vars(m) for m in model if isinstance(m, nn.Linear))
            inside = model(x)
        assert all("forward" not in vars(m) for m in model)  # restored: torch.export sees plain nn.Linear
        torch.testing.assert_close(inside, before, rtol=1e-5, atol=1e-6)
        assert torch.equal(model(x), before)


def test_eager_models_run_through_onednn(tiny_dir, monkeypatch):
    """HFModel and EagerDecoder compute their linears with it (and give transformers' numbers to fp32 rounding)."""
    from edgeslm.model.build import build_decoder
    from edgeslm.model.checkpoint import load_checkpoint
    from edgeslm.model.source import resolve

    ckpt = load_checkpoint(resolve(str(tiny_dir("qwen2")), None))
    ids = [1, 5, 9, 33, 7, 2]
    hf, ours = HFModel(ckpt.reference_model()), EagerDecoder(build_decoder(ckpt, 64))
    plain = hf.model(torch.tensor([ids])).logits[0].detach()
    calls = []
    real = _onednn()
    monkeypatch.setattr("edgeslm.parity.kernels._onednn", lambda: lambda *a: calls.append(1) or real(*a))
    torch.testing.assert_close(hf.logits(ids), plain, rtol=0, atol=1e-4)
    n_hf = len(calls)
    torch.testing.assert_close(ours.logits(ids), plain, rtol=0, atol=1e-4)
    assert n_hf > 0 and len(calls) > n_hf


def test_benchmark_quick_runs():
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "linear_kernels.py"), "--quick", "--repeats", "1"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = [line for line in p.stdout.splitlines() if line.startswith("| SmolLM2")]
    assert len(rows) == 4 and all(float(r.split("|")[8]) < 1e-4 for r in rows), p.stdout

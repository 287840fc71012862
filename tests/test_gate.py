"""A failed gate: exit 1, artifacts still written and marked failed, the report says what failed."""

from __future__ import annotations

import json

from click.testing import CliRunner

from edgeslm.cli import main


def test_failed_gate_exits_1_and_marks_bundle(tiny_dir, tmp_path):
    t = tmp_path / "strict.toml"
    t.write_text('name = "strict"\nbackends = ["executorch"]\nrecipe = "8da4w"\ncontext_length = 64\n'
                 '[gates.reauthoring]\nmax_abs_logit_diff = 1e-3\n[gates.8da4w.lowering]\nmax_kl_mean = 0.1\n'
                 '[gates.8da4w.quantization]\nmin_top1 = 1.0\nmax_kl_mean = 0.0\n')
    out = tmp_path / "b"
    res = CliRunner().invoke(main, ["export", str(tiny_dir("llama")), "--target", str(t), "-o", str(out)])
    assert res.exit_code == 1, res.output
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "failed" and m["artifacts"][0]["parity"] == "failed"
    assert (out / m["artifacts"][0]["file"]).stat().st_size == m["artifacts"][0]["bytes"]
    md = (out / "parity.md").read_text()
    assert "FAILED" in md and "mean KL" in md and "quantization" in md
    assert CliRunner().invoke(main, ["verify", str(out)]).exit_code == 0

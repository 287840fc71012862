"""A failed gate: exit 1, artifacts still written and marked failed, the report says what failed; ``run`` and
``bench`` name the failed stages before running such a bundle, and refuse it with ``--strict``."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgeslm.bundle.caveats import caveat
from edgeslm.cli import main


@pytest.fixture(scope="module")
def failed(tiny_dir, tmp_path_factory):
    """(bundle, export result) of a tiny llama whose 8da4w quantization gate cannot pass (top-1 1.0, KL 0)."""
    root = tmp_path_factory.mktemp("failed")
    t = root / "strict.toml"
    t.write_text('name = "strict"\nbackends = ["executorch"]\nrecipe = "8da4w"\ncontext_length = 64\n'
                 '[gates.reauthoring]\nmax_abs_logit_diff = 1e-3\n[gates.8da4w.lowering]\nmax_kl_mean = 0.1\n'
                 '[gates.8da4w.quantization]\nmin_top1 = 1.0\nmax_kl_mean = 0.0\n')
    out = root / "b"
    return out, CliRunner().invoke(main, ["export", str(tiny_dir("llama")), "--target", str(t), "-o", str(out)])


def test_failed_gate_exits_1_and_marks_bundle(failed):
    out, res = failed
    assert res.exit_code == 1, res.output
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "failed" and m["artifacts"][0]["parity"] == "failed"
    assert (out / m["artifacts"][0]["file"]).stat().st_size == m["artifacts"][0]["bytes"]
    md = (out / "parity.md").read_text()
    assert "FAILED" in md and "mean KL" in md and "quantization" in md
    assert CliRunner().invoke(main, ["verify", str(out)]).exit_code == 0


def _failed_stages(out) -> tuple[str, list[str]]:
    """The bundle's one artifact and the stages its manifest entry marks failed."""
    (art,) = json.loads((out / "manifest.json").read_text())["artifacts"]
    return art["file"], [s for s, words in art["validation"].items() if words == "failed"]


def test_run_warns_on_a_failed_bundle_and_strict_refuses_it(failed):
    out, _ = failed
    name, stages = _failed_stages(out)
    assert "quantization" in stages
    res = CliRunner().invoke(main, ["run", str(out), "-p", "The import", "-n", "2"])
    assert res.exit_code == 0, res.output
    warnings = [line for line in res.stderr.splitlines() if line.startswith("warning: ")]
    assert warnings == [line for line in warnings if f"{name}: failed parity at export ({', '.join(stages)})"
                        in line and "the demo apps refuse it" in line] and len(warnings) == 1, res.stderr
    assert res.stdout.endswith("\n")  # it still ran: the line run ends its text with (random weights: any text)

    strict = CliRunner().invoke(main, ["run", str(out), "-p", "The import", "-n", "2", "--strict"])
    assert strict.exit_code == 1, strict.output
    (error,) = [line for line in strict.stderr.splitlines() if line.startswith(("error: ", "warning: "))]
    assert error.startswith(f"error: refused under --strict: {name}: failed parity at export"), error
    assert "fix: " in error and strict.stdout == ""  # nothing generated


def test_bench_names_the_failed_stages_in_json_and_strict_times_nothing(failed, monkeypatch):
    from edgeslm import api
    from edgeslm.latency import bench

    out, _ = failed
    name, stages = _failed_stages(out)
    started = []
    real_popen = bench.subprocess.Popen  # the bench worker's process (its count lines stream back)
    monkeypatch.setattr(bench.subprocess, "Popen",
                        lambda cmd, *a, **kw: started.append(cmd) or real_popen(cmd, *a, **kw))
    monkeypatch.setattr(api, "host_facts", lambda: {"cpu": "stub"})
    args = ["bench", str(out), "--prompt-len", "4", "--gen-len", "2", "--warmup", "0", "--repeats", "1", "--json"]

    strict = CliRunner().invoke(main, [*args, "--strict"])
    assert strict.exit_code == 1, strict.output
    doc = json.loads(strict.stdout)
    assert doc["exit_code"] == 1 and doc["error"].startswith(f"refused under --strict: {name}: failed parity")
    assert started == []

    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    (w,) = doc["warnings"]
    assert (w["artifact"], w["failed_stages"], w["bundle_failed"]) == (name, stages, True)
    assert f"warning: {w['message']}" in res.stderr.splitlines()
    assert [a["measured"] for a in doc["artifacts"]] == [True] and len(started) == 1  # then timed as asked


def _manifest(status: str, validation: dict, parity: str = "passed") -> tuple[dict, dict]:
    entry = {"file": "m.pte", "backend": "executorch", "recipe": "8da4w", "parity": parity, "validation": validation}
    return {"status": status, "artifacts": [entry]}, entry


def test_caveat_of_a_bundle_failed_elsewhere_and_of_a_stage_not_run():
    m, e = _manifest("failed", {"quantization": "passed", "lowering": "passed"})
    c = caveat(m, e)  # the bundle failed outside this artifact (re-authoring, a latency budget): apps refuse it
    assert c.failed and c.failed_stages == () and "is in a bundle that failed" in c.message()
    m, e = _manifest("passed", {"quantization": "passed", "lowering": "not run: no Mac here"}, "runtime_not_run")
    c = caveat(m, e)
    assert not c.failed and c.not_run_stages == {"lowering": "no Mac here"}
    assert "its lowering stage was not run at export (no Mac here)" in c.message()
    assert "never checked" in c.message() and "refuse" not in c.message()


def test_caveat_none_for_a_cleared_artifact_and_words_no_edgeslm_writes():
    m, e = _manifest("passed", {"quantization": "passed", "end_to_end": "informational, not gated"})
    assert caveat(m, e) is None
    m, e = _manifest("passed", {"quantization": 3, "lowering": "maybe", "x": None})  # hand-edited: left out
    assert caveat(m, e) is None
    m, e = _manifest("failed", {"lowering": ["odd"]}, "failed")  # failed, no stage says which: parity.md does
    assert caveat(m, e).failed_stages == ("parity",)
    m, e = _manifest("passed", {}, "runtime_not_run")
    assert list(caveat(m, e).not_run_stages) == ["runtime"]

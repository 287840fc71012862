"""Typed records: the JSON reports are written from them, read back into them, and match the published schemas;
reading reports (gate, report) never imports torch."""

from __future__ import annotations

import json
import subprocess
import sys

from edgeslm.gates import Thresholds
from edgeslm.parity.report import parity_document
from edgeslm.records import (PARITY_WORD, Check, Status, Validation, artifact_size, artifact_verdict, ships,
                             verdict)
from edgeslm.json_schemas import problems


def _check(stage, artifact, th, kl=0.01, top1=0.95) -> Check:
    c = Check(stage=stage, artifact=artifact, reference="a", candidate="b", prompts=1, positions=4, greedy_tokens=2,
              metrics={"max_abs_logit_diff": 0.5, "top1_agreement": top1, "top1_exact": 0.75,
                       "decisive_fraction": 0.5, "kl_mean": kl, "kl_max": 0.1, "logit_sqnr_db": 12.0,
                       "perplexity_reference": 40.0, "perplexity_candidate": 41.0, "ppl_rise": 0.025,
                       "greedy_prefix_mean": 0.5, "greedy_exact": 0},
              per_prompt=[{"prompt": "p", "greedy_prefix": 1, "greedy_tokens": 2, "divergence_margin": 0.01}],
              top1_by_position=[1.0, None, 1.0, None], kl_by_position=[0.0, 0.01, 0.02, 0.01])
    return c.judge(th)


def _records():
    checks = [_check("reauthoring", None, Thresholds(max_abs_logit_diff=1.0)),
              _check("quantization", "m.pte", Thresholds(max_kl_mean=0.1, min_top1=0.9)),
              _check("lowering", "m.pte", Thresholds(max_kl_mean=0.1, informational=True)),
              _check("end_to_end", "m.pte", None),
              Check("runtime_agreement", "onnx/model.onnx", "ort", "genai", 1, 0, 2,
                    {"greedy_prefix_mean": 0.5, "greedy_exact": 0},
                    [{"prompt": "p", "greedy_prefix": 1, "greedy_tokens": 2, "divergence_margin": 1e-6}]
                    ).judge(Thresholds(min_greedy_prefix=1.0, tie_margin=0.02))]
    vals = [Validation.of_facts("m.mlpackage", "structure", [{"check": "x", "expected": 1, "found": 1,
                                                              "passed": True}]),
            Validation.not_run("m.mlpackage", "lowering", "Core ML predicts on macOS only", "macOS 15+")]
    return checks, vals


def test_statuses_and_one_verdict():
    checks, vals = _records()
    assert [c.status for c in checks] == [Status.PASSED, Status.PASSED, Status.INFO, Status.INFO, Status.PASSED]
    assert checks[4].metrics["greedy_ties"] == 1  # the divergence was within the tie margin
    assert verdict([Status.PASSED, Status.INFO]) is Status.PASSED
    assert verdict([Status.PASSED, Status.NOT_RUN]) is Status.NOT_RUN and ships(Status.NOT_RUN)
    assert verdict([Status.NOT_RUN, Status.FAILED]) is Status.FAILED and not ships(Status.FAILED)
    assert PARITY_WORD[artifact_verdict("m.mlpackage", checks, vals)] == "runtime_not_run"
    failing = _check("quantization", "m.pte", Thresholds(max_kl_mean=0.001))
    assert failing.status is Status.FAILED
    assert artifact_verdict("m.pte", checks + [failing], vals) is Status.FAILED


def test_records_round_trip_and_match_the_published_schema():
    checks, vals = _records()
    doc = json.loads(json.dumps(parity_document("demo", "android", checks, vals)))
    assert problems(doc, "parity") == [], problems(doc, "parity")
    assert doc["status"] == "not_run" and doc["passed"] is True
    assert [Check.from_json(c).to_json() for c in doc["checks"]] == doc["checks"]
    assert [Validation.from_json(v).to_json() for v in doc["validations"]] == doc["validations"]
    info = doc["checks"][2]
    assert info["status"] == "info" and info["gate"]["passed"] is False  # informational is never "passed"
    bad = json.loads(json.dumps(doc))
    bad["checks"][1]["status"] = "ok"
    assert problems(bad, "parity")


def test_a_1_0_check_reads_with_a_derived_status():
    old = _check("quantization", "m.pte", Thresholds(max_kl_mean=0.001)).to_json()
    del old["status"], old["gate"]["status"], old["gate"]["notes"]
    assert Check.from_json(old).status is Status.FAILED


def test_one_artifact_size():
    entry = {"file": "onnx/model.onnx", "bytes": 10, "files": [{"file": "onnx/model.onnx.data", "bytes": 90},
                                                             {"file": "onnx/genai_config.json", "bytes": 5}]}
    assert artifact_size(entry) == 105


def test_gate_and_report_read_json_without_torch(tmp_path):
    checks, vals = _records()
    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / "parity.json").write_text(json.dumps(parity_document("demo", "android", checks, vals)))
    sha = "0" * 64  # gate and report read the JSON only: the artifacts are not on disk
    (bundle / "manifest.json").write_text(json.dumps({  # the published manifest schema's required fields
        "schema_version": "1.1", "kind": "edgeslm-bundle", "context_length": 64, "generation": {},
        "target": {"name": "android", "device": None}, "status": "passed",
        "model": {"id": "demo", "source": "local", "architecture": "LlamaForCausalLM", "family": "llama"},
        "artifacts": [{"file": "m.pte", "bytes": 3, "sha256": sha, "backend": "executorch", "recipe": "8da4w",
                       "parity": "passed"},
                      {"file": "onnx/model.onnx", "bytes": 3, "sha256": sha, "backend": "onnx", "recipe": "int4",
                       "parity": "passed"},
                      {"file": "m.mlpackage/x", "package": "m.mlpackage", "bytes": 3, "sha256": sha,
                       "backend": "coreml", "recipe": "int4", "parity": "runtime_not_run",
                       "weight_bytes_by_dtype": {"int4": 3}}],
        "tokenizer": {"kind": "hf", "files": [{"file": "tokenizer.json", "bytes": 1, "sha256": sha}]},
        "special_tokens": {"bos_id": 1, "eos_ids": [2]}, "chat_template": {"found": False, "template": None},
        "provenance": {"edgeslm": None, "torch": None, "executorch": None, "transformers": None}, "reports": []}))
    code = ("import sys, json; from edgeslm.cli import main\n"
            "for args in (['gate', sys.argv[1], '--json'], ['report', sys.argv[1]]):\n"
            "    try: main(args)\n"
            "    except SystemExit as e: print('exit', e.code)\n"
            "print('torch loaded:', 'torch' in sys.modules)\n")
    res = subprocess.run([sys.executable, "-c", code, str(bundle)], capture_output=True, text=True, timeout=120)
    assert "torch loaded: False" in res.stdout, res.stdout + res.stderr
    gate = json.loads(res.stdout[:res.stdout.index("exit")])
    assert gate["passed"] and "exit 0" in res.stdout, res.stdout + res.stderr


def test_a_1_0_parity_report_still_validates():
    """Readers accept any 1.x: a report written before 1.1 (no status, no decisive top-1, SQNR, perplexity)."""
    checks, vals = _records()
    doc = json.loads(json.dumps(parity_document("demo", "android", checks[:4], vals)))
    doc["schema_version"] = "1.0"
    del doc["status"]
    for c in doc["checks"]:
        del c["status"], c["gate"]["status"], c["gate"]["notes"]
        for k in ("top1_exact", "decisive_fraction", "logit_sqnr_db", "perplexity_reference",
                  "perplexity_candidate", "ppl_rise", "greedy_agreement", "greedy_ties"):
            c["metrics"].pop(k, None)
        c["top1_by_position"] = [1.0 if v is None else v for v in c["top1_by_position"]]
    assert problems(doc, "parity") == [], problems(doc, "parity")


# --- manifest.json, latency.json and summary.json as records ------------------------------------------------------

def _manifest_record():
    from edgeslm.records import Artifact, Manifest, ManifestTarget, NotBuilt

    sha = "0" * 64
    arts = [Artifact("m.pte", 10, sha, "executorch", "executorch", "8da4w", ["linear: int8 dyn / int4 g32"],
                     status=Status.PASSED, validation={"quantization": "passed", "lowering": "passed"},
                     facts={"metadata": {"get_max_seq_len": 64}}),
            Artifact("onnx/model.onnx", 10, sha, "onnx", "onnxruntime", "int4", [],
                     files=[{"file": "onnx/model.onnx.data", "bytes": 90, "sha256": sha}], status=Status.FAILED,
                     validation={"quantization": "failed", "end_to_end": Status.INFO.describe()},
                     reused_from_target="ios"),
            Artifact("m.mlpackage/Manifest.json", 3, sha, "coreml", "coreml", "int4", [], package="m.mlpackage",
                     status=Status.NOT_RUN, validation={"lowering": Status.NOT_RUN.describe("macOS only")})]
    return Manifest(schema_version="1.3", status=Status.FAILED, created="2026-01-01T00:00:00+00:00",
                    target=ManifestTarget("android", "a phone", "snapdragon-8-gen-3"),
                    model={"id": "demo", "source": "local", "architecture": "llama", "family": "llama"},
                    artifacts=arts, tokenizer={"kind": "huggingface-tokenizers",
                                               "files": [{"file": "tokenizer.json", "bytes": 1, "sha256": sha}]},
                    special_tokens={"bos_id": 1, "eos_ids": [2]}, chat_template={"found": False, "template": None},
                    generation={}, context_length=64,
                    provenance={"edgeslm": None, "torch": None, "executorch": None, "transformers": None},
                    reports=[{"file": "parity.json", "bytes": 1, "sha256": sha}],
                    not_built=[NotBuilt("qnn.pte", "executorch-qnn", "16a4w", "no QAIRT SDK", "install QAIRT",
                                        [], validation={"lowering": "not run: no SDK"})],
                    context_length_from={"source": "target"})


def test_manifest_record_round_trips_and_matches_the_published_schema():
    from edgeslm.records import Manifest

    m = _manifest_record()
    doc = json.loads(json.dumps(m.to_json()))
    assert problems(doc, "manifest") == [], problems(doc, "manifest")
    assert Manifest.from_json(doc) == m
    assert json.dumps(Manifest.from_json(doc).to_json()) == json.dumps(doc)  # same keys, same order
    assert [a["parity"] for a in doc["artifacts"]] == ["passed", "failed", "runtime_not_run"]
    assert doc["artifacts"][1]["size_bytes"] == 100 == artifact_size(doc["artifacts"][1])
    assert "adapters" not in doc and "speculative" not in doc and doc["not_built"][0]["parity"] == "runtime_not_run"


def test_one_word_per_status():
    assert [s.describe("r") for s in Status] == ["passed", "failed", "not run: r", "informational, not gated"]
    assert PARITY_WORD == {s: s.parity_word for s in Status if s is not Status.INFO}
    assert all(Status.of_parity_word(s.parity_word) is s for s in PARITY_WORD)
    assert all(Status.of_description(s.describe(r)) is s for s in Status for r in (None, "r"))  # read back


def _latency_record():
    from edgeslm.records import Budget, ExportCost, Latency, Measured, Predicted

    band = {"low": 8.0, "point": 10.0, "high": 12.0}
    spread = {"median": 10.0, "min": 9.0, "max": 11.0}
    return Latency("1.2", "2026-01-01T00:00:00+00:00", "android",
                   {"measured": {"prompt_len": 8, "gen_len": 8}, "predicted": {"prompt_len": 128, "gen_len": 128}},
                   {"cpu": "x", "cores": 2, "memory_bandwidth": {"read_gb_s": 8.0}},
                   [Measured("m.pte", "executorch", "8da4w", "executorch", True,
                             figures={"ttft_ms": spread, "prefill_tok_s": spread, "decode_tok_s": spread,
                                      "peak_rss_mib": 3.0, "runs": 3}),
                    Measured("m.mlpackage", "coreml", "int4", "coreml", False, "macOS only")],
                   "snapdragon-8-gen-3", "a phone",
                   [Predicted("m.pte", True, recipe="8da4w",
                              figures={"device": "snapdragon-8-gen-3", "ttft_ms": band, "prefill_tok_s": band,
                                       "decode_tok_s": band, "memory_mb": 12.0, "fits_in_memory": True,
                                       "inputs": {}}),
                    Predicted("m.mlpackage", False, backend="coreml", reason="no figures")],
                   ["assumption"],
                   [Budget("m.pte", "snapdragon-8-gen-3", "min_decode_tok_s", 5.0, 8.0, True),
                    Budget("m.pte", "snapdragon-8-gen-3", "max_context_mb", 1000.0, 12.0, True, None)],
                   export_cost=ExportCost(["executorch"], 40.0, 52.0, 1100, 935, "vmhwm-reset", 2))


def test_latency_record_round_trips_and_its_budgets_decide_by_the_one_rule():
    from edgeslm.records import Budget, Latency

    lat = _latency_record()
    doc = json.loads(json.dumps(lat.to_json()))
    assert problems(doc, "latency") == [], problems(doc, "latency")
    assert Latency.from_json(doc) == lat and json.dumps(Latency.from_json(doc).to_json()) == json.dumps(doc)
    assert doc["passed"] and "reason" in doc["budgets"][1] and "reason" not in doc["budgets"][0]
    # the forecast against the run: errors are measured / predicted - 1, derived, not stored apart
    assert (doc["export_cost"]["seconds"]["error"], doc["export_cost"]["peak_rss_mib"]["error"]) == (0.3, -0.15)
    bad = json.loads(json.dumps(doc))
    bad["export_cost"]["seconds"]["measured"] = "52 s"
    assert problems(bad, "latency")
    lat.budgets.append(Budget("m.pte", "d", "max_ttft_ms", 1.0, 12.0, False))
    assert lat.status is Status.FAILED and lat.to_json()["passed"] is False
    assert lat.budgets[-1].message() == "predicted 12 vs limit 1 on d"
    lat.measured, lat.host = None, None
    assert lat.to_json()["measured_here"] is None and Latency.from_json(lat.to_json()) == lat


def _bundle(tmp_path, manifest, latency=None):
    checks, vals = _records()
    bundle = tmp_path / "b"
    bundle.mkdir(exist_ok=True)
    (bundle / "parity.json").write_text(json.dumps(parity_document("demo", "android", checks, vals)))
    (bundle / "manifest.json").write_text(json.dumps(manifest.to_json()))
    if latency is not None:
        (bundle / "latency.json").write_text(json.dumps(latency.to_json()))
    return bundle


def test_report_rows_round_trip_and_one_verdict(tmp_path):
    from edgeslm.reports.collect import load_report
    from edgeslm.records import Report

    m = _manifest_record()
    m.status = Status.PASSED
    m.not_built = []
    for a, name in zip(m.artifacts, ("m.pte", "onnx/model.onnx", "m.mlpackage")):
        a.status = Status.PASSED if a.backend != "coreml" else Status.NOT_RUN
    report = load_report(_bundle(tmp_path, m, _latency_record()))
    doc = json.loads(json.dumps(report.to_json()))
    assert problems(doc, "report") == [], problems(doc, "report")
    assert Report.from_json(doc) == report and json.dumps(Report.from_json(doc).to_json()) == json.dumps(doc)
    assert doc["status"] == "not_run" and doc["passed"] is True and doc["targets"][0]["passed"] is True
    assert sum(doc["counts"].values()) == len(doc["targets"][0]["checks"])
    assert any(r["kind"] == "latency" and r["status"] == "passed" for r in doc["targets"][0]["checks"])


def test_a_failed_artifact_no_row_explains_is_refused_not_papered_over(tmp_path):
    import pytest

    from edgeslm.errors import InputError
    from edgeslm.reports.collect import load_report

    m = _manifest_record()  # onnx/model.onnx is marked failed, but every check in parity.json passes
    with pytest.raises(InputError, match="onnx/model.onnx is marked failed but no failing check explains it"):
        load_report(_bundle(tmp_path, m))
    for a in m.artifacts:
        a.status = Status.PASSED
    with pytest.raises(InputError, match="the bundle is marked failed but its checks say passed"):
        load_report(_bundle(tmp_path, m))


def test_export_result_round_trips():
    from pathlib import Path

    from edgeslm.pipeline import ExportResult

    checks, vals = _records()
    m = _manifest_record()
    r = ExportResult(Path("out/android"), False, m.artifacts, parity_document("demo", "android", checks, vals),
                     {"total_s": 1.5}, _latency_record(), {"peak_gib": 1.0}, {"peak_rss_mib": 3},
                     [Path("reports/summary.json")])
    doc = json.loads(json.dumps(r.to_json()))
    assert ExportResult.from_json(doc) == r
    assert list(doc) == ["output", "passed", "artifacts", "timings", "forecast", "memory", "parity", "latency",
                         "reports"]

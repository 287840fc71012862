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
from edgeslm.reports.schemas import problems


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

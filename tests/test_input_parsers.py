"""Every parser of outside input (target, device and gate TOML; the JSON reports ``gate`` and ``report`` read)
answers bad input with an InputError naming the file and key (one line, exit 2), never a Python exception.

Plain tests pin the messages for known bad values; property tests (Hypothesis) mutate the built-in files and a
report folder at random (values of other types, dropped and added keys, wrong nesting) and require that each
parser either accepts the document or raises InputError, and that the CLI exits 0, 1 or 2 without a traceback.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import tomllib
from datetime import date, datetime, time
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_records import _records  # the typed records test_records round-trips: a real parity document, no model

from edgeslm.cli import main
from edgeslm.errors import InputError
from edgeslm.gates import parse_gate_tables
from edgeslm.latency.devices import builtin_devices, parse_device
from edgeslm.parity.report import parity_document
from edgeslm.reports.collect import load_report, load_target
from edgeslm.reports.gate import load_gate_file
from edgeslm.json_schemas import problems, reader_problems
from edgeslm.reports.write import write_reports
from edgeslm.target import Target, builtin_targets, check_target_device, parse_target

# per property test: the whole file stays well under a minute on 2 cores (set EDGESLM_HYPOTHESIS_EXAMPLES for a
# deeper search)
EXAMPLES = int(os.environ.get("EDGESLM_HYPOTHESIS_EXAMPLES", "40"))
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- a tiny TOML writer (neither tomli_w nor tomlkit is a dependency) -----------------------------------------------

def _toml_str(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, (datetime, date, time)):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_str(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def to_toml(doc: dict) -> str:
    """A document as TOML, every table inline: ``key = {...}`` (valid for any dict tree of TOML values)."""
    return "".join(f"{_toml_str(k)} = {_toml_value(v)}\n" for k, v in doc.items())


def test_toml_writer_round_trips_the_builtin_files():
    for path in [*builtin_targets().values(), *builtin_devices().values()]:
        doc = tomllib.loads(path.read_text())
        assert tomllib.loads(to_toml(doc)) == doc


# --- targets ------------------------------------------------------------------------------------------------------

BASE_TARGET = ('name = "t"\nbackends = ["executorch", "onnx"]\nrecipe = { executorch = "8da4w", onnx = "int4" }\n'
               'context_length = 128\n')


def _target_file(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "t.toml"
    p.write_text(text)
    return p


def test_builtin_targets_and_devices_parse():
    targets = {n: parse_target(p) for n, p in builtin_targets().items()}
    assert {"android", "ios", "jetson-orin"} <= set(targets)
    for t in targets.values():
        check_target_device(t)  # every built-in target's device profile loads
    assert targets["jetson-orin"].options["onnx"] == {"provider_options": [{"cuda": {"enable_cuda_graph": "0"}}]}
    assert targets["android"].options["onnx"] == {"provider_options": [{"xnnpack": {}}]}
    devices = {n: parse_device(p) for n, p in builtin_devices().items()}
    assert devices["snapdragon-8-gen-3"].perf("executorch").bandwidth_efficiency["int8_dynamic"] == 0.576


def test_a_good_target_with_every_key_parses(tmp_path):
    t = parse_target(_target_file(tmp_path, BASE_TARGET + 'description = "d"\ngroup_size = 64\n'
                                  'device = "pixel-8-pro"\n'
                                  '[onnx]\nprovider_options = [{ cuda = { enable_cuda_graph = "0" } }, { cpu = {} }]\n'
                                  '[latency]\nprompt_len = 32\ngen_len = 16\nmin_decode_tok_s = 20\n'
                                  'max_memory_mb = 900.5\n'
                                  '[gates.reauthoring]\nmin_top1 = 1\nmax_kl_mean = 0\n'))
    assert (t.group_size, t.context_length, t.device) == (64, 128, "pixel-8-pro")
    assert t.latency == {"prompt_len": 32, "gen_len": 16, "min_decode_tok_s": 20.0, "max_memory_mb": 900.5}
    assert t.options["onnx"]["provider_options"][1] == {"cpu": {}}
    assert t.gates["reauthoring"].min_top1 == 1.0


@pytest.mark.parametrize("extra, needles", [
    ('context_length = "big"', ["context_length", "'big'", "whole number"]),
    ("context_length = 0", ["context_length", ">= 1"]),
    ("context_length = true", ["context_length", "True"]),
    ("context_length = 512.0", ["context_length", "512.0"]),
    ("gates = 5", ["gates", "must be tables"]),
    ('onnx = { provider_options = "cuda" }', ["onnx.provider_options", "'cuda'", "list"]),
    ("onnx = { provider_options = [\"cuda\"] }", ["onnx.provider_options[0]", "exactly one key"]),
    ("onnx = { provider_options = [{ cuda = {}, cpu = {} }] }", ["onnx.provider_options[0]", "exactly one key"]),
    ('onnx = { provider_options = [{ cuda = "fast" }] }', ["onnx.provider_options[0].cuda", "table"]),
    ("onnx = { provider_options = [{ cuda = { enable_cuda_graph = 0 } }] }",
     ["onnx.provider_options[0].cuda.enable_cuda_graph", "string", 'enable_cuda_graph = "0"']),
    ('onnx = { provider_options = [{ "" = {} }] }', ["onnx.provider_options[0]", "provider name"]),
    ("onnx = 5", ["onnx", "table"]),
    ("onnx = { providers = [] }", ["unknown key 'providers'", "provider_options"]),
    ("group_size = 8", ["group_size", "power of two >= 16"]),
    ("group_size = 48", ["group_size", "48"]),
    ('group_size = "32"', ["group_size", "'32'"]),
    ("group_size = 0", ["group_size"]),
    ("device = 5", ["device", "string"]),
    ('device = ""', ["device", "non-empty"]),
    ('description = ["x"]', ["description", "string"]),
    ("latency = 3", ["latency", "table"]),
    ("latency = { prompt_len = 0 }", ["latency.prompt_len", ">= 1"]),
    ('latency = { gen_len = "64" }', ["latency.gen_len", "'64'"]),
    ("latency = { gen_len = 1.5 }", ["latency.gen_len"]),
    ("latency = { max_ttft_ms = -1 }", ["latency.max_ttft_ms", "> 0"]),
    ("latency = { min_decode_tok_s = nan }", ["latency.min_decode_tok_s", "finite"]),
    ("latency = { max_memory_mb = inf }", ["latency.max_memory_mb", "finite"]),
    ('latency = { min_prefill_tok_s = "fast" }', ["latency.min_prefill_tok_s", "'fast'"]),
    ("latency = { min_decode_tok_s = false }", ["latency.min_decode_tok_s", "False"]),
    ("latency = { max_tftt_ms = 5 }", ["unknown key 'max_tftt_ms'", "max_ttft_ms"]),
    ("colour = 1", ["unknown key 'colour'"]),
])
def test_target_values_are_checked(tmp_path, extra, needles):
    with pytest.raises(InputError) as e:
        key = extra.split(" =")[0]
        base = "".join(line + "\n" for line in BASE_TARGET.splitlines() if not line.startswith(key + " ="))
        parse_target(_target_file(tmp_path, base + extra + "\n"))
    msg = str(e.value)
    assert "t.toml" in msg or "target" in msg, msg
    for n in needles:
        assert n in msg, msg


@pytest.mark.parametrize("text, needles", [
    ('name = 5\nbackends = ["onnx"]\nrecipe = "int4"\ncontext_length = 8', ["name", "string"]),
    ('name = "  "\nbackends = ["onnx"]\nrecipe = "int4"\ncontext_length = 8', ["name", "non-empty"]),
    ('name = "t"\nbackends = "onnx"\nrecipe = "int4"\ncontext_length = 8', ["backends", "list", "'onnx'"]),
    ('name = "t"\nbackends = []\nrecipe = "int4"\ncontext_length = 8', ["backends", "non-empty"]),
    ('name = "t"\nbackends = [1]\nrecipe = "int4"\ncontext_length = 8', ["backends", "1"]),
    ('name = "t"\nbackends = ["onxx"]\nrecipe = "int4"\ncontext_length = 8', ["unknown backend 'onxx'",
                                                                              "did you mean 'onnx'"]),
    ('name = "t"\nbackends = ["onnx", "onnx"]\nrecipe = "int4"\ncontext_length = 8', ["'onnx' is listed twice"]),
    ('name = "t"\nbackends = ["onnx"]\nrecipe = 4\ncontext_length = 8', ["recipe", "recipe name"]),
    ('name = "t"\nbackends = ["onnx"]\nrecipe = {}\ncontext_length = 8', ["recipe"]),
    ('name = "t"\nbackends = ["onnx"]\nrecipe = { tflite = "x" }\ncontext_length = 8',
     ["unknown backend 'tflite'", "recipe table"]),
    ('name = "t"\nbackends = ["onnx"]\nrecipe = { onnx = 4 }\ncontext_length = 8', ["recipe.onnx", "4"]),
    ('name = "t"\nbackends = ["onnx"]\nrecipe = "int4"', ["lacks context_length"]),
])
def test_target_required_keys_are_checked(tmp_path, text, needles):
    with pytest.raises(InputError) as e:
        parse_target(_target_file(tmp_path, text + "\n"))
    for n in needles:
        assert n in str(e.value), str(e.value)


def test_target_file_that_cannot_be_read(tmp_path):
    with pytest.raises(InputError, match="is a folder"):
        parse_target(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        parse_target(tmp_path / "missing.toml")
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(b'name = "caf\xe9"\n')
    with pytest.raises(InputError, match="not UTF-8"):
        parse_target(latin1)
    with pytest.raises(InputError, match="not valid TOML"):
        parse_target(_target_file(tmp_path, "name = \n"))
    deep = _target_file(tmp_path, "x = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(InputError):
        parse_target(deep)


def test_unknown_device_is_refused_before_any_work(tmp_path):
    path = _target_file(tmp_path, BASE_TARGET + 'device = "snapdragon-8-gen-4"\n')
    t = parse_target(path)
    with pytest.raises(InputError) as e:
        check_target_device(t)
    msg = str(e.value)
    assert str(path) in msg and "'snapdragon-8-gen-4'" in msg and "not a known device profile" in msg, msg
    assert all(d in msg for d in builtin_devices()), msg  # the fix lists the built-in devices
    assert "did you mean 'snapdragon-8-gen-3'" in msg, msg
    bad = tmp_path / "dev.toml"
    bad.write_text('name = "d"\ndescription = ""\nmemory_bandwidth_gb_s = "fast"\nusable_memory_gb = 4\n')
    with pytest.raises(InputError, match="memory_bandwidth_gb_s"):
        check_target_device(parse_target(_target_file(tmp_path, BASE_TARGET + f'device = "{bad}"\n')))
    check_target_device(Target("t", "", ("onnx",), "int4", 8))  # no device: nothing to check


# --- gate tables (target files and gate files) ----------------------------------------------------------------------

@pytest.mark.parametrize("bound, value, needle", [
    ("min_top1", 1.5, "between 0 and 1"),
    ("min_top1", -0.1, "between 0 and 1"),
    ("min_greedy_prefix", 2, "between 0 and 1"),
    ("max_kl_mean", -1.0, ">= 0"),
    ("max_abs_logit_diff", -1e-3, ">= 0"),
    ("tie_margin", -0.5, ">= 0"),
    ("max_ppl_rise", -0.05, ">= 0"),
    ("max_kl_mean", math.nan, ">= 0"),
    ("max_kl_mean", math.inf, ">= 0"),
    ("min_sqnr_db", -math.inf, "finite"),
    ("min_sqnr_db", 10 ** 400, "finite"),
    ("min_top1", "high", "must be a number"),
    ("min_top1", True, "must be a number"),
    ("min_top1", [0.9], "must be a number"),
])
def test_gate_bounds_have_ranges(bound, value, needle):
    with pytest.raises(InputError) as e:
        parse_gate_tables({"int4": {"quantization": {bound: value}}}, "g.toml")
    msg = str(e.value)
    assert f"gates.int4.quantization.{bound}" in msg and "g.toml" in msg and needle in msg, msg


def test_gate_bounds_at_the_edges_of_their_ranges_are_fine():
    g = parse_gate_tables({"reauthoring": {"min_top1": 0, "min_greedy_prefix": 1, "max_kl_mean": 0,
                                           "tie_margin": 0, "max_ppl_rise": 0},
                           "int4": {"quantization": {"min_sqnr_db": -20}}}, "g.toml")
    assert g["reauthoring"].min_greedy_prefix == 1.0 and g["int4"]["quantization"].min_sqnr_db == -20.0


@pytest.mark.parametrize("tables, needle", [
    ({"int4": {"quantization": 0.9}}, "[gates.int4.quantization] in g.toml must be a table"),
    ({"int4": ["quantization"]}, "[gates.int4] in g.toml must hold stage tables"),
    ({"reauthoring": "strict"}, "[gates.reauthoring] in g.toml must be a table"),
    ([{"int4": {}}], "gates in g.toml must be tables"),
])
def test_stage_tables_that_are_not_tables(tables, needle):
    with pytest.raises(InputError) as e:
        parse_gate_tables(tables, "g.toml")
    assert needle in str(e.value), str(e.value)


# --- device profiles ------------------------------------------------------------------------------------------------

BASE_DEVICE = ('name = "d"\ndescription = "a phone"\nmemory_bandwidth_gb_s = 50.0\nusable_memory_gb = 4.0\n')
PERF = ('runtime = "r"\nbandwidth_efficiency = { float = 0.6, int8_dynamic = 0.5, weight_only = 0.6 }\n'
        'prefill_gflops = { float = 100.0, int8_dynamic = 400.0, weight_only = 100.0 }\nstep_overhead_us = 0\n')


def _device(tmp_path, text) -> Path:
    p = tmp_path / "dev.toml"
    p.write_text(text)
    return p


def test_a_good_device_parses(tmp_path):
    d = parse_device(_device(tmp_path, BASE_DEVICE + "[backends.onnx]\n" + PERF))
    assert d.perf("onnx").prefill_gflops["int8_dynamic"] == 400.0 and d.perf("onnx").step_overhead_us == 0.0


@pytest.mark.parametrize("text, needles", [
    (BASE_DEVICE.replace("50.0", '"fast"'), ["memory_bandwidth_gb_s", "'fast'", "GB/s"]),
    (BASE_DEVICE.replace("50.0", "-5"), ["memory_bandwidth_gb_s", "> 0"]),
    (BASE_DEVICE.replace("50.0", "nan"), ["memory_bandwidth_gb_s", "finite"]),
    (BASE_DEVICE.replace("4.0", "0"), ["usable_memory_gb", "> 0"]),
    (BASE_DEVICE.replace("4.0", "true"), ["usable_memory_gb", "True"]),
    (BASE_DEVICE.replace('"d"', "5"), ["name", "string"]),
    (BASE_DEVICE.replace('"a phone"', "[1]"), ["description", "string"]),
    (BASE_DEVICE.replace('name = "d"\n', ""), ["lacks name"]),
    (BASE_DEVICE + "backends = 5\n", ["backends", "[backends.executorch]"]),
    (BASE_DEVICE + "[backends]\nonnx = 3\n", ["[backends.onnx]", "must be a table"]),
    (BASE_DEVICE + "[backends.tflite]\n" + PERF, ["unknown backend 'tflite'"]),
    (BASE_DEVICE + "[backends.onnx]\n" + PERF.replace("{ float = 0.6", "{ float = 3"),
     ["backends.onnx.bandwidth_efficiency.float", "(0, 1]", "3"]),
    (BASE_DEVICE + "[backends.onnx]\n" + PERF.replace("{ float = 0.6", "{ float = 0"),
     ["backends.onnx.bandwidth_efficiency.float", "(0, 1]"]),
    (BASE_DEVICE + "[backends.onnx]\n" + PERF.replace("bandwidth_efficiency = {", "bandwidth_efficiency = 3 #"),
     ["backends.onnx.bandwidth_efficiency", "table"]),
    (BASE_DEVICE + "[backends.onnx]\n" + PERF.replace("float = 100.0", "float = -1"),
     ["backends.onnx.prefill_gflops.float", "> 0"]),
    (BASE_DEVICE + "[backends.onnx]\n" + PERF.replace("{ float = 100.0, ", "{ "),
     ["backends.onnx.prefill_gflops", "lacks float"]),
    (BASE_DEVICE + "[backends.onnx]\n" + PERF.replace("weight_only = 0.6 }", "weight_only = 0.6, int3 = 1 }"),
     ["unknown key 'int3'"]),
    (BASE_DEVICE + "[backends.onnx]\n" + PERF.replace("step_overhead_us = 0", "step_overhead_us = -1"),
     ["backends.onnx.step_overhead_us", ">= 0"]),
    (BASE_DEVICE + "[backends.onnx]\n" + PERF.replace('runtime = "r"', "runtime = 1"),
     ["backends.onnx.runtime", "string"]),
    (BASE_DEVICE + "[backends.onnx]\nruntime = \"r\"\n", ["[backends.onnx]", "lacks bandwidth_efficiency"]),
    (b'name = "\xff"\n', ["not UTF-8"]),
])
def test_device_values_are_checked(tmp_path, text, needles):
    p = tmp_path / "dev.toml"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(InputError) as e:
        parse_device(p)
    msg = str(e.value)
    assert "dev.toml" in msg, msg
    for n in needles:
        assert n in msg, msg


# --- report folders (no model export: the records test_records builds, a hand-written manifest and latency) -------

GATE_TEXT = ("[gates.reauthoring]\nmax_abs_logit_diff = 2.0\n"
             "[gates.8da4w.quantization]\nmin_top1 = 0.5\nmax_kl_mean = 1.0\n"
             "[gates.int4.lowering]\nmin_top1 = 0.5\n")


def _manifest() -> dict:
    """A manifest following the published schema (the artifacts' bytes are not on disk: gate and report read
    only the JSON)."""
    def f(name, size=3):
        return {"file": name, "bytes": size, "sha256": "0" * 64}

    return {"schema_version": "1.1", "kind": "edgeslm-bundle", "status": "passed",
            "target": {"name": "android", "device": "snapdragon-8-gen-3"},
            "model": {"id": "demo", "source": "local", "architecture": "LlamaForCausalLM", "family": "llama"},
            "artifacts": [{**f("m.pte"), "backend": "executorch", "recipe": "8da4w", "parity": "passed"},
                          {**f("onnx/model.onnx"), "backend": "onnx", "recipe": "int4", "parity": "passed",
                           "files": [f("onnx/model.onnx.data", 5)]},
                          {**f("m.mlpackage/Manifest.json"), "package": "m.mlpackage", "backend": "coreml",
                           "recipe": "int4", "parity": "runtime_not_run", "weight_bytes_by_dtype": {"int4": 3}}],
            "tokenizer": {"kind": "hf", "files": [f("tokenizer.json")]},
            "special_tokens": {"bos_id": 1, "eos_ids": [2]}, "chat_template": {"found": False, "template": None},
            "generation": {}, "context_length": 128,
            "provenance": {"edgeslm": "0.1.0", "torch": None, "executorch": None, "transformers": None},
            "reports": [f("parity.json")]}


def _latency() -> dict:
    spread = {"median": 10.0, "min": 9.0, "max": 11.0}
    band = {"low": 8.0, "point": 10.0, "high": 12.0}
    return {
        "schema_version": "1.1", "kind": "edgeslm-latency", "bundle": "b",
        "settings": {"measured": {"prompt_len": 8, "gen_len": 8}, "predicted": {"prompt_len": 128, "gen_len": 128}},
        "measured_here": {"host": {"cpu": "x", "cores": 2, "memory_bandwidth": {"read_gb_s": 8.0}}, "artifacts": [
            {"artifact": "m.pte", "backend": "executorch", "measured": True, "ttft_ms": spread, "prefill_tok_s": spread,
             "decode_tok_s": spread, "peak_rss_mib": 10.0, "runs": 3},
            {"artifact": "onnx/model.onnx", "backend": "onnx", "measured": False, "reason": "no runtime"}]},
        "predicted_on_device": {"device": "snapdragon-8-gen-3", "assumptions": ["a"], "artifacts": [
            {"artifact": "m.pte", "predicted": True, "device": "snapdragon-8-gen-3", "ttft_ms": band,
             "prefill_tok_s": band, "decode_tok_s": band, "memory_mb": 12.0, "fits_in_memory": True, "inputs": {}},
            {"artifact": "m.mlpackage", "predicted": False, "reason": "no figures"}]},
        "budgets": [{"artifact": "m.pte", "device": "snapdragon-8-gen-3", "budget": "min_decode_tok_s",
                     "limit": 5.0, "predicted": 8.0, "passed": True}],
        "passed": True,
    }


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A bundle folder (manifest.json, parity.json, latency.json), a --report-dir written from it, a gate file."""
    root = tmp_path_factory.mktemp("reports")
    bundle = root / "bundle"
    bundle.mkdir()
    checks, vals = _records()
    docs = {"parity.json": parity_document("demo", "android", checks, vals), "manifest.json": _manifest(),
            "latency.json": _latency()}
    for name, doc in docs.items():
        (bundle / name).write_text(json.dumps(doc))
    write_reports([bundle], root / "reports")
    (root / "gates.toml").write_text(GATE_TEXT)
    return bundle, root / "reports", root / "gates.toml"


def test_the_report_fixtures_are_valid(folders):
    bundle, reports, _ = folders
    for name, schema in (("parity.json", "parity"), ("latency.json", "latency"), ("manifest.json", "manifest")):
        doc = json.loads((bundle / name).read_text())
        assert problems(doc, schema) == [] and reader_problems(doc, schema) == []
    summary = json.loads((reports / "summary.json").read_text())
    assert problems(summary, "report") == [] and reader_problems(summary, "report") == []
    assert load_report(reports).counts == load_report(bundle).counts
    for folder in (bundle, reports):
        assert _cli("gate", str(folder)).exit_code == 0
        assert _cli("report", str(folder)).exit_code == 0


def _cli(*args):
    res = CliRunner().invoke(main, list(args))
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output and "internal error" not in res.output, res.output
    if res.exit_code == 2:
        assert len(res.output.strip().splitlines()) == 1, res.output  # one error line
    return res


def _broken(folder: Path, name: str, doc, tmp: Path) -> Path:
    dst = tmp / folder.name
    shutil.copytree(folder, dst)
    (dst / name).write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return dst


@pytest.mark.parametrize("where, name, mutate, needles", [
    ("reports", "summary.json", lambda d: [d], ["summary.json", "JSON list, not an object"]),
    ("reports", "summary.json", lambda d: "edgeslm-report", ["summary.json", "JSON str"]),
    ("reports", "summary.json", lambda d: {"kind": "edgeslm-report"},
     ["summary.json", "'schema_version' is a required"]),
    ("reports", "summary.json", lambda d: {**d, "kind": "x"}, ["is not an edgeslm report"]),
    ("reports", "summary.json", lambda d: {**d, "targets": [{**d["targets"][0], "checks": 5}]},
     ["summary.json", "targets/0/checks"]),
    ("reports", "summary.json",
     lambda d: {**d, "targets": [{**d["targets"][0],
                                  "artifacts": [{**d["targets"][0]["artifacts"][0], "bytes": "3"}]}]},
     ["summary.json", "targets/0/artifacts/0/bytes"]),
    ("reports", "summary.json", '{"kind": "edgeslm-report", "passed": 1' + "0" * 30 + "}",
     ["integer", "out of range"]),
    ("bundle", "parity.json",
     lambda d: {**d, "checks": [{**d["checks"][0], "gate": {"thresholds": {"min_topp": 1}}}]},
     ["parity.json", "checks/0/gate"]),
    ("bundle", "parity.json",
     lambda d: {**d, "checks": [{k: v for k, v in d["checks"][0].items() if k != "positions"}]},
     ["parity.json", "'positions' is a required property"]),
    ("bundle", "parity.json", lambda d: [], ["parity.json", "JSON list"]),
    ("bundle", "manifest.json", lambda d: {**d, "artifacts": None}, ["manifest.json", "(at artifacts)"]),
    ("bundle", "manifest.json", lambda d: {k: v for k, v in d.items() if k != "target"},
     ["manifest.json", "'target' is a required property"]),
    ("bundle", "manifest.json", lambda d: {**d, "artifacts": [{**d["artifacts"][0], "file": "../../etc/passwd"}]},
     ["manifest.json", "../../etc/passwd", "'..' component"]),
    ("bundle", "latency.json",
     lambda d: {**d, "budgets": [{**d["budgets"][0], "predicted": "fast"}]}, ["latency.json", "budgets/0/predicted"]),
    ("bundle", "latency.json", lambda d: {**d, "measured_here": 7}, ["latency.json", "measured_here"]),
    ("bundle", "latency.json", "{not json", ["cannot read", "latency.json"]),
    ("bundle", "latency.json", b"\xff\xfe", ["cannot read", "latency.json"]),
])
def test_reports_of_the_wrong_shape_are_refused(folders, tmp_path, where, name, mutate, needles):
    bundle, reports, _ = folders
    folder = bundle if where == "bundle" else reports
    # a callable edits the good document (written back as JSON); str / bytes are the file's raw contents
    raw = json.dumps(mutate(json.loads((folder / name).read_text()))) if callable(mutate) else mutate
    dst = tmp_path / folder.name
    shutil.copytree(folder, dst)
    (dst / name).write_bytes(raw if isinstance(raw, bytes) else raw.encode())
    with pytest.raises(InputError) as e:
        load_report(dst)
    msg = str(e.value)
    for n in needles:
        assert n in msg, msg
    assert "edgeslm export" in e.value.hint, e.value.hint
    for cmd in ("gate", "report"):
        res = _cli(cmd, str(dst))
        assert res.exit_code == 2 and name in res.output, res.output
        assert len(res.output.strip().splitlines()) == 1, res.output  # one line


def test_a_corrupt_onnx_artifact_is_an_input_error(folders, tmp_path):
    bundle, _, _ = folders
    dst = tmp_path / "b"
    shutil.copytree(bundle, dst)
    (dst / "onnx").mkdir()
    (dst / "onnx" / "model.onnx").write_bytes(b"\x08\x07 not a protobuf" * 3)  # report reads its sizes by dtype
    res = _cli("report", str(dst))
    assert res.exit_code == 2 and "cannot be read as an ONNX model" in res.output, res.output


def test_load_target_refuses_a_folder_without_readable_reports(tmp_path):
    (tmp_path / "manifest.json").mkdir()
    (tmp_path / "parity.json").write_text("{}")
    with pytest.raises(InputError, match="manifest.json"):
        load_target(tmp_path)


def test_gate_file_values_are_checked_and_exit_2(folders, tmp_path):
    _, reports, _ = folders
    cases = [("[gates.8da4w.quantization]\nmin_top1 = 1.5\n", "between 0 and 1"),
             ("[gates.8da4w.quantization]\nmax_kl_mean = -0.1\n", ">= 0"),
             ('[gates.8da4w.quantization]\nmin_top1 = "0.9"\n', "must be a number"),
             ('[gates]\n8da4w = "strict"\n', "must hold stage tables"),
             ('gates = "strict"\n', "must be tables"),
             ("[gates.8da4w.quantization\n", "not valid TOML"),
             ("mode = 1\n", "unknown key 'mode'")]
    for text, needle in cases:
        g = tmp_path / "g.toml"
        g.write_text(text)
        with pytest.raises(InputError, match=None) as e:
            load_gate_file(g)
        assert needle in str(e.value) and "g.toml" in str(e.value), str(e.value)
        res = _cli("gate", str(reports), "--gates", str(g))
        assert res.exit_code == 2 and needle in res.output, res.output
    with pytest.raises(InputError, match="is a folder"):
        load_gate_file(tmp_path)
    (tmp_path / "bin.toml").write_bytes(b"\x80gates")
    with pytest.raises(InputError, match="not UTF-8"):
        load_gate_file(tmp_path / "bin.toml")
    strict = tmp_path / "strict.toml"
    strict.write_text("[gates.8da4w.quantization]\nmin_top1 = 1.0\nmax_kl_mean = 0.0\n")
    assert _cli("gate", str(reports), "--gates", str(strict)).exit_code == 1  # a valid, failing gate file: exit 1


# --- property tests: random mutations of real documents -----------------------------------------------------------

_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=8)
_key = st.one_of(st.sampled_from(["name", "backends", "recipe", "gates", "onnx", "latency", "device", "float",
                                  "reauthoring", "int4", "8da4w", "quantization", "lowering", "min_top1",
                                  "max_kl_mean", "provider_options", "cuda", "executorch", "onnx", "coreml",
                                  "prompt_len", "informational", "bandwidth_efficiency", "prefill_gflops"]), _text)
_toml_scalars = st.one_of(st.booleans(), st.integers(), st.integers(-3, 3),
                          st.floats(allow_nan=True, allow_infinity=True), _text,
                          st.sampled_from(["onnx", "int4", "8da4w", "executorch", "snapdragon-8-gen-3", "cuda"]),
                          st.dates(), st.times(), st.datetimes())
_toml_values = st.recursive(_toml_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(_key, inner, max_size=3)), max_leaves=8)
_json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-2, 2), st.integers(-2 ** 70, 2 ** 70),
                          st.floats(allow_nan=True, allow_infinity=True), _text,
                          st.sampled_from(["passed", "failed", "not_run", "info", "quantization", "m.pte", "onnx",
                                           "8da4w", "edgeslm-report"]))
_json_values = st.recursive(_json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(_key, inner, max_size=3)), max_leaves=8)


def _paths(doc, prefix=()):
    """Every (path, value) in a dict/list tree."""
    yield prefix, doc
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, (*prefix, i))


def _mutate(draw, doc, values):
    """``doc`` with 1-4 random edits: a value replaced by a random one, a key or item dropped, a key added, a value
    wrapped in a list or table (wrong nesting), or a table replaced by one of its values (wrong flattening)."""
    doc = json.loads(json.dumps(doc, default=str)) if values is _json_values else _deepcopy(doc)
    for _ in range(draw(st.integers(1, 4))):
        paths = list(_paths(doc))
        path, value = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["replace", "drop", "add", "wrap_list", "wrap_table", "flatten"]))
        if op == "add":
            if isinstance(value, dict):
                value[draw(_key)] = draw(values)
            elif isinstance(value, list):
                value.append(draw(values))
            continue
        if not path:
            continue  # the top level stays a table (tomllib and json.dumps of a dict): its contents change
        parent = doc
        for p in path[:-1]:
            parent = parent[p]
        last = path[-1]
        if op == "drop":
            del parent[last]
        elif op == "replace":
            parent[last] = draw(values)
        elif op == "wrap_list":
            parent[last] = [value]
        elif op == "wrap_table":
            parent[last] = {draw(_key): value}
        elif op == "flatten" and isinstance(value, (dict, list)) and value:
            parent[last] = draw(st.sampled_from(list(value.values()) if isinstance(value, dict) else value))
    return doc


def _deepcopy(doc):
    import copy

    return copy.deepcopy(doc)


@st.composite
def toml_documents(draw, bases: list[dict]):
    if draw(st.integers(0, 5)) == 0:  # now and then a fully random tree
        return draw(st.dictionaries(_key, _toml_values, max_size=6))
    return _mutate(draw, draw(st.sampled_from(bases)), _toml_values)


_TARGETS = [tomllib.loads(p.read_text()) for p in builtin_targets().values()]
_DEVICES = [tomllib.loads(p.read_text()) for p in builtin_devices().values()]
_GATES = [{"gates": t["gates"]} for t in _TARGETS]


def _parse_or_input_error(fn, doc):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "doc.toml"
        path.write_text(to_toml(doc), encoding="utf-8")
        try:
            return fn(path)
        except InputError as e:
            assert e.problem and e.hint and "\n" not in e.problem and "\n" not in e.hint, str(e)  # one line
            return e


@PROPERTY
@given(toml_documents(_TARGETS))
def test_any_target_file_parses_or_is_an_input_error(doc):
    t = _parse_or_input_error(parse_target, doc)
    if isinstance(t, Target):
        assert isinstance(t.name, str) and t.name and t.backends and isinstance(t.context_length, int)
        assert t.context_length >= 1 and not isinstance(t.context_length, bool)
        assert t.group_size is None or (t.group_size >= 16 and t.group_size & (t.group_size - 1) == 0)
        for entry in t.options["onnx"].get("provider_options", []):
            (options,) = entry.values()
            assert all(isinstance(v, str) for v in options.values())
        try:
            check_target_device(t)
        except InputError:
            pass


@PROPERTY
@given(toml_documents(_DEVICES))
def test_any_device_file_parses_or_is_an_input_error(doc):
    d = _parse_or_input_error(parse_device, doc)
    if not isinstance(d, InputError):
        assert d.memory_bandwidth_gb_s > 0 and d.usable_memory_gb > 0
        for perf in d.backends.values():
            assert all(0 < x <= 1 for x in perf.bandwidth_efficiency.values())
            assert all(math.isfinite(x) and x > 0 for x in perf.prefill_gflops.values())


@PROPERTY
@given(toml_documents(_GATES))
def test_any_gate_file_parses_or_is_an_input_error(doc):
    g = _parse_or_input_error(load_gate_file, doc)
    if not isinstance(g, InputError):
        th = [g["reauthoring"]] if "reauthoring" in g else []
        th += [t for k, stages in g.items() if k != "reauthoring" for t in stages.values()]
        for t in th:
            assert all(math.isfinite(v) for v in t.bounds.values())
            assert t.min_top1 is None or 0 <= t.min_top1 <= 1


@st.composite
def json_mutations(draw, doc):
    return _mutate(draw, doc, _json_values)


@pytest.mark.parametrize("where, name", [("reports", "summary.json"), ("bundle", "parity.json"),
                                         ("bundle", "manifest.json"), ("bundle", "latency.json")])
@settings(max_examples=EXAMPLES // 2, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_gate_and_report_never_crash_on_a_mutated_report(folders, where, name, data):
    bundle, reports, gates = folders
    folder = bundle if where == "bundle" else reports
    original = json.loads((folder / name).read_text())
    if data.draw(st.integers(0, 5), label="fully random") == 0:
        doc = data.draw(_json_values, label=name)
    else:
        doc = data.draw(json_mutations(original), label=name)
    with tempfile.TemporaryDirectory() as tmp:
        dst = _broken(folder, name, doc, Path(tmp))
        codes = {_cli("gate", str(dst), "--gates", str(gates)).exit_code,
                 _cli("gate", str(folder), "--baseline", str(dst)).exit_code,
                 _cli("report", str(dst)).exit_code}
        assert codes <= {0, 1, 2}, codes


def test_a_target_status_that_is_not_a_status_is_refused_by_name(folders, tmp_path):
    """Found by the fuzzer above: a report target whose status was a list crashed gate (an internal error); the
    readers now hold a target's status to the statuses, so it is one clear message, exit 2."""
    _, reports, gates = folders
    dst = tmp_path / "reports"
    shutil.copytree(reports, dst)
    doc = json.loads((dst / "summary.json").read_text())
    doc["targets"][0]["status"] = ["passed"]
    (dst / "summary.json").write_text(json.dumps(doc))
    res = _cli("gate", str(dst), "--gates", str(gates))
    assert res.exit_code == 2 and "targets/0/status" in res.output, res.output

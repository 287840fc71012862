"""The Backend protocol (issue 23): every registered backend honours one typed contract; adding a backend is one
folder plus one registry line; nothing outside edgeslm/backends/ and edgeslm/quant/ names a backend or a recipe;
what a recipe is (kernel kind, bits, embedding bits) comes from its rules. Fast: no model is exported."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

import edgeslm.backends as registry
from edgeslm.backends import backend_names, get_backend
from edgeslm.backends.protocol import REQUIRED, AppRuntime, ArtifactFormat, Backend
from edgeslm.errors import InputError
from edgeslm.gates import Thresholds
from edgeslm.quant.recipes import ALIASES, KINDS, RECIPES, get_recipe
from edgeslm.target import builtin_targets, load_target

ROOT = Path(__file__).resolve().parents[1]


def check_contract(b: Backend, tmp_path: Path) -> None:
    """Every member of the protocol present, typed, and answering sensibly."""
    assert isinstance(b, Backend)
    for member, kind in REQUIRED.items():
        assert isinstance(vars(type(b)).get(member, getattr(type(b), member)), kind), (b.name, member)
    assert b.name in backend_names() and get_backend(b.name) is b
    assert b.runtime.strip() and b.runs_on.strip()
    assert isinstance(b.app, AppRuntime) and b.app.runtime and b.app.package
    assert b.app.honoured and all(isinstance(h, str) for h in b.app.honoured)
    fmt = b.artifact_format
    assert isinstance(fmt, ArtifactFormat) and fmt.name and callable(fmt.reader)
    assert fmt.what.startswith(("a ", "an ")), fmt.what
    # recipes: each exists in quant/recipes.py and has latency facts
    assert b.recipes and len(set(b.recipes)) == len(b.recipes)
    for r in b.recipes:
        assert r in RECIPES, (b.name, r)
        rec = get_recipe(r)
        assert rec.kind in KINDS and rec.bits in (4, 8, 16, 32) and rec.embed_bits > 0, (b.name, r)
        assert b.kv_element_bytes(rec) in (1, 2, 4)
        stages = b.gated_stages(r)
        assert isinstance(stages, dict) and stages, (b.name, r)
        assert all(isinstance(s, str) and (g is None or isinstance(g, Thresholds)) for s, g in stages.items())
    # cost model and runtime facts
    assert b.lowering_per_fp32_byte > 0 and b.lowering_bytes_per_layer >= 0
    assert min(b.seconds_per_layer, b.seconds_per_parameter) >= 0 < b.seconds_per_layer + b.seconds_per_parameter
    assert b.kv_bytes in (1, 2, 4)
    assert all(isinstance(m, str) and m for m in b.runtime_modules)
    for why in (b.unavailable_here(), b.not_built_here()):
        assert why is None or (isinstance(why, str) and why.strip())
    entry = b.load_entry({"file": "folder/model.bin", "package": "model.pkg"})
    assert isinstance(entry, dict) and {"path", "tokenizer"} <= set(entry)
    # target options: each shipped target's build options work; the section's parser rejects unknown keys
    for name in builtin_targets():
        json.dumps(b.build_options(load_target(name)), sort_keys=True, default=str)
    if b.option_section is not None:
        path = tmp_path / "t.toml"
        assert isinstance(b.parse_options({}, path), dict)
        with pytest.raises(InputError, match="surely_not_an_option"):
            b.parse_options({"surely_not_an_option": 1}, path)
        with pytest.raises(InputError):
            b.parse_options(3, path)


@pytest.mark.parametrize("name", backend_names())
def test_every_backend_honours_the_contract(name, tmp_path):
    check_contract(get_backend(name), tmp_path)


def test_backend_modules_import_nothing_heavy():
    """The registry and every backend module import without torch, transformers or a runtime (CLI help, target
    files, predictions and the bare-runtime RSS reference read their facts)."""
    code = ("import sys; from edgeslm.backends import all_backends; all_backends(); "
            "heavy = [m for m in ('torch', 'transformers', 'onnx', 'onnxruntime', 'executorch', 'coremltools', "
            "'edgeslm.backends.base', 'edgeslm.model') if m in sys.modules]; print(heavy); assert not heavy")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr


def test_a_mistyped_backend_class_fails_when_defined():
    with pytest.raises(TypeError, match="missing"):
        type("Broken", (Backend,), {"name": "broken"})
    with pytest.raises(TypeError, match="has_verifier"):
        type("NoVerifier", (get_backend(backend_names()[0]).__class__,), {"has_verifier": False})


def test_manifest_schema_lists_the_registry_app_runtimes():
    """The manifest schema's ``load.runtime`` enum is the registry's app runtimes (apps switch on it)."""
    schema = json.loads((ROOT / "edgeslm" / "schemas" / "manifest.schema.json").read_text())
    enum = schema["$defs"]["artifact"]["properties"]["load"]["properties"]["runtime"]["enum"]
    assert set(enum) == {get_backend(n).app.runtime for n in backend_names()}


# -- recipes: facts from their rules ------------------------------------------------------------------------------

EXPECTED = {  # name: (kind, bits, embedding bits): the values the latency model's name tables used to hold
    "fp32": ("float", 32, 32), "fp16": ("float", 16, 16), "8da4w": ("int8_dynamic", 4, 8),
    "int8w": ("int8_dynamic", 8, 8), "int4": ("weight_only", 4, 4 + 16 / 32), "int8": ("weight_only", 8, 8 + 16 / 32),
    "palettize4": ("weight_only", 4, 4), "16a4w": ("fixed_point", 4, 8), "16a8w": ("fixed_point", 8, 8),
    "16a4w-block": ("fixed_point", 4, 8), "int4-asym": ("weight_only", 4, 8 + 16 / 32),
    "8da4w-asym": ("int8_dynamic", 4, 8), "8da4w-hqq": ("int8_dynamic", 4, 8),
    "8da4w-asym-all4": ("int8_dynamic", 4, 4 + 16 / 32), "8da4w-asym-emb4": ("int8_dynamic", 4, 4 + 16 / 32),
    "int4-asym-all4": ("weight_only", 4, 4 + 16 / 32),
}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_facts_come_from_its_rules(name):
    rec = get_recipe(name)
    assert (rec.kind, rec.bits, rec.embed_bits) == EXPECTED[name]


def test_16a4w_block_is_predicted_as_fixed_point():
    """A QNN-built .pte of recipe 16a4w-block was read as float before (missing from a name table): no figure."""
    from edgeslm.latency.devices import load_device
    from edgeslm.latency.perf import predict
    from edgeslm.latency.workload import from_artifact

    shape = {"vocab_size": 2048, "hidden_size": 128, "num_layers": 4, "num_heads": 4, "num_kv_heads": 2,
             "head_dim": 32, "intermediate_size": 384}
    art = {"file": "model-16a4w-block-qnn.pte", "bytes": 40_000_000, "backend": "executorch-qnn",
           "recipe": "16a4w-block", "files": [{"file": "model-16a4w-block-qnn.calibration.txt", "bytes": 100}]}
    manifest = {"model": {"shape": shape}, "context_length": 512, "artifacts": [art]}
    w = from_artifact(manifest, art)
    assert w.kind == "fixed_point" and w.kv_bytes_per_position == 2 * 4 * 2 * 32 * 2
    assert w.streamed_bytes == 40_000_000 - 2048 * 128 * 8 / 8
    dev = load_device("snapdragon-8-gen-3")
    assert "fixed_point" in dev.perf("executorch-qnn").bandwidth_efficiency
    p = predict(w, dev, "executorch-qnn", 128, 64)
    assert p["kernel_kind"] == "fixed_point" and p["decode_tok_s"]["point"] > 0
    same = from_artifact(manifest, {**art, "recipe": "16a4w"})
    assert (same.kind, same.streamed_bytes) == (w.kind, w.streamed_bytes)


# -- no backend or recipe name outside backends/ and quant/ -------------------------------------------------------

# (file, literal): why it is not a backend's or recipe's name. Keep it tiny.
ALLOWED = {
    ("edgeslm/bundle/manifest.py", "executorch"): "the Python package whose version the manifest records",
    ("edgeslm/cli.py", "executorch"): "the Python package's logger, silenced",
    ("edgeslm/latency/reference_rss.py", "onnx"): "the Python package `onnx`, looked up in sys.modules",
}


def _literals(tree: ast.AST):
    """Every string constant, f-string parts included (ast gives them as Constant nodes too)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def test_no_backend_or_recipe_literals_outside_backends_and_quant():
    names = set(backend_names()) | set(RECIPES) | set(ALIASES)
    found, used = [], set()
    for f in sorted((ROOT / "edgeslm").rglob("*.py")):
        rel = f.relative_to(ROOT).as_posix()
        if rel.startswith(("edgeslm/backends/", "edgeslm/quant/")):
            continue
        for line, value in _literals(ast.parse(f.read_text(), rel)):
            if value in names:  # exact: prose such as f"edgeslm {x} fp32 eager" names a dtype
                if (rel, value) in ALLOWED:
                    used.add((rel, value))
                else:
                    found.append(f"{rel}:{line}: {value!r}")
    assert not found, "backend/recipe names outside edgeslm/backends and edgeslm/quant:\n" + "\n".join(found)
    assert used == set(ALLOWED), f"stale allowlist entries: {set(ALLOWED) - used}"


# -- adding a backend: one folder, one registry line --------------------------------------------------------------

TOY = '''
from pathlib import Path

from edgeslm.backends.executorch.backend import FORMAT
from edgeslm.backends.protocol import AppRuntime, Backend
from edgeslm.errors import InputError


class Toy(Backend):
    name = "toy-npu"
    runtime = "Toy runtime"
    artifact_format = FORMAT
    recipes = ("16a8w", "fp32")
    app = AppRuntime(runtime="executorch", package="executorch", honoured=("max_new_tokens",))
    runs_on = "a toy NPU"
    kv_bytes = 2
    lowering_per_fp32_byte = 1.0
    seconds_per_layer = 1.0
    option_section = "toy"

    def gated_stages(self, recipe):
        return {"quantization": None}

    def parse_options(self, table, path: Path) -> dict:
        if not isinstance(table, dict):
            raise InputError(f"toy in {path} must be a table", "write [toy]")
        unknown = sorted(set(table) - {"cores"})
        if unknown:
            raise InputError(f"unknown key {unknown[0]!r} in toy of target file {path}", "supported keys are cores")
        return dict(table)

    def build_options(self, target) -> dict:
        return self.options(target)

    def unavailable_here(self):
        return "no toy NPU here"

    def load_entry(self, artifact):
        return {"path": artifact["file"], "tokenizer": "tokenizer.json"}

    def export(self, job, recipe, tmp):
        raise NotImplementedError

    def _generate(self, bundle, artifact, prompt, max_new_tokens, temperature, on_token):
        raise NotImplementedError

    def step_model(self, bundle, artifact):
        raise NotImplementedError
'''


@pytest.fixture
def toy_backend(tmp_path, monkeypatch):
    """A backend in a folder of its own (written here) plus one registry line."""
    folder = tmp_path / "pkg" / "edgeslm_toy_backends" / "toy_npu"
    folder.mkdir(parents=True)
    (folder.parent / "__init__.py").write_text("")
    (folder / "__init__.py").write_text("")
    (folder / "backend.py").write_text(textwrap.dedent(TOY))
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    monkeypatch.setitem(registry.REGISTRY, "toy-npu", "edgeslm_toy_backends.toy_npu.backend:Toy")
    return get_backend("toy-npu")


def test_adding_a_backend_is_one_folder_and_one_registry_line(toy_backend, tmp_path):
    from edgeslm.cli import main
    from edgeslm.latency.devices import parse_device
    from edgeslm.preflight import forecast

    assert "toy-npu" in backend_names()
    check_contract(toy_backend, tmp_path)
    help_text = " ".join(CliRunner().invoke(main, ["export", "--help"]).output.split())
    assert "toy-npu (repeatable)" in help_text and "16a8w, fp32 (toy-npu)" in help_text
    target = tmp_path / "toy.toml"
    target.write_text('name = "toy"\nbackends = ["toy-npu"]\nrecipe = "16a8w"\ncontext_length = 64\n'
                      '[gates.16a8w.quantization]\nmin_top1 = 0.5\n[gates.reauthoring]\nmax_abs_logit_diff = 1e-3\n'
                      '[toy]\ncores = 2\n')
    t = load_target(target)
    assert t.backends == ("toy-npu",) and t.options["toy"] == {"cores": 2}
    assert toy_backend.build_options(t) == {"cores": 2}
    target.write_text(target.read_text() + "speed = 3\n")
    with pytest.raises(InputError, match="speed"):
        load_target(target)
    device = tmp_path / "toy-dev.toml"
    device.write_text('name = "d"\ndescription = "toy"\nmemory_bandwidth_gb_s = 10.0\nusable_memory_gb = 1.0\n'
                      '[backends.toy-npu]\nbandwidth_efficiency = { fixed_point = 0.5 }\n'
                      'prefill_gflops = { fixed_point = 100.0 }\n')
    assert "toy-npu" in parse_device(device).backends
    f = forecast(10**6, 1000, 64, 2, False, ["toy-npu"])
    assert f.peak_bytes > 0 and f.seconds > 0

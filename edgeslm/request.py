"""What one ``edgeslm export`` run is asked to do, as a value: the CLI parses into it, Python callers build it.

    from edgeslm.request import ExportRequest
    req = ExportRequest.of("demo", ["android", "ios"], report_dir=Path("reports"))

Plain values are checked here, before any model is read (each refusal one InputError, worded as the CLI's
options); what needs the target files or the checkpoint is checked by ``edgeslm.pipeline``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeslm.errors import InputError
from edgeslm.model.source import DEMO_NAME
from edgeslm.quant.recipes import is_group_size
from edgeslm.target import Target

DEFAULT_TARGET = "android"
OUTPUT_ROOT = Path("out")


def _stem(target: str | Path | Target) -> str:
    """The name a target gives its bundle folder: a built-in's name, or a target file's stem."""
    return target.name if isinstance(target, Target) else Path(target).stem


def _strings(value, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, Path)):
        value = (value,)
    items = tuple(str(v) for v in value)
    if any(not v.strip() for v in items):
        raise InputError(f"{what} names an empty value", f"leave {what} out or give a value")
    return items


@dataclass(frozen=True)
class ExportRequest:
    """One export run: ``model`` for each ``(target, bundle folder)`` of ``targets``.

    ``recipes``: ``"R"`` entries apply to every backend being built that supports R, ``"backend=R"`` to that
    backend only (as ``--recipe`` repeats); a ``{backend: R}`` dict is taken too. ``backends`` replaces the
    targets' own; ``context_length`` defaults to each target's, capped at the model's max_position_embeddings.
    ``bench=False``: latency.json holds the device prediction only. ``memory_check=False``: go on when the
    predicted peak memory exceeds what this machine has. ``report_dir``: also write the release reports there.
    """

    model: str
    targets: tuple[tuple[str | Target, Path], ...]
    report_dir: Path | None = None
    backends: tuple[str, ...] | None = None
    recipes: tuple[str, ...] | None = None
    group_size: int | None = None
    revision: str | None = None
    context_length: int | None = None
    bench: bool = True
    memory_check: bool = True
    force: bool = False
    adapters: tuple[str, ...] = ()
    draft: str | None = None
    prompts: tuple[str, ...] | None = None
    gguf_file: str | None = None  # a .gguf in the Hub repo ``model``: folded into ``model`` as org/name/FILE.gguf

    def __post_init__(self):
        put = object.__setattr__  # frozen: normalize once, here
        if not isinstance(self.model, (str, Path)) or not str(self.model).strip():
            raise InputError("no model given", "name a model: `demo`, a local folder, or a Hub id in the HF cache")
        put(self, "model", str(self.model))
        if self.gguf_file is not None:  # resolve() reads org/name/FILE.gguf: the pipeline passes model alone
            if self.model == DEMO_NAME or Path(self.model).expanduser().exists():
                raise InputError(f"--gguf-file {self.gguf_file} applies to Hub ids, but {self.model} is local",
                                 "leave --gguf-file out, or pass the local .gguf path as MODEL")
            if not str(self.gguf_file).lower().endswith(".gguf"):
                raise InputError(f"--gguf-file {self.gguf_file!r} is not a .gguf file name",
                                 "pass the file's name as the repo lists it, e.g. --gguf-file model-Q4_K_M.gguf")
            if not self.model.endswith(f"/{self.gguf_file}"):
                put(self, "model", f"{self.model.rstrip('/')}/{self.gguf_file}")
        pairs = tuple((t if isinstance(t, Target) else str(t), Path(out)) for t, out in self.targets)
        if not pairs:
            raise InputError("no target given", f"pass --target (e.g. {DEFAULT_TARGET})")
        put(self, "targets", pairs)
        if self.report_dir is not None:
            put(self, "report_dir", Path(self.report_dir))
        put(self, "backends", _strings(self.backends, "--backend") or None)
        recipes = self.recipes
        if isinstance(recipes, dict):
            recipes = tuple(f"{b}={r}" for b, r in recipes.items())
        put(self, "recipes", _strings(recipes, "--recipe") or None)
        put(self, "adapters", _strings(self.adapters, "--adapter"))
        if self.prompts is not None:
            put(self, "prompts", tuple(self.prompts))
        if self.context_length is not None and (not isinstance(self.context_length, int)
                                                or isinstance(self.context_length, bool) or self.context_length < 1):
            raise InputError(f"--context-length must be a positive number of positions, not {self.context_length}",
                             "pass e.g. --context-length 512, or leave it out for the target's")
        if self.group_size is not None and not is_group_size(self.group_size):
            raise InputError(f"--group-size must be a power of two of at least 16, not {self.group_size}",
                             "pass 32, 64 or 128 (4-bit kernels take power-of-two blocks), or leave it out")
        for name in ("bench", "memory_check", "force"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"{name} must be True or False, not {getattr(self, name)!r}")

    @classmethod
    def of(cls, model: str, targets=(), output: Path | None = None, **options) -> ExportRequest:
        """The request the CLI makes: ``targets`` by name or target file [default: android], bundle folders
        named from ``output``: with one target ``output`` itself [default: out/MODEL-TARGET], with several one
        folder per target inside ``output`` [default: out/MODEL]."""
        if isinstance(targets, (str, Path, Target)):
            targets = (targets,)
        targets = tuple(targets) or (DEFAULT_TARGET,)
        name = Path(str(model)).name.removesuffix(".gguf")
        if len(targets) == 1:
            outs = [Path(output) if output else OUTPUT_ROOT / f"{name}-{_stem(targets[0])}"]
        else:
            parent = Path(output) if output else OUTPUT_ROOT / name
            outs = [parent / _stem(t) for t in targets]
        return cls(model, tuple(zip(targets, outs)), **options)

    @property
    def outputs(self) -> list[Path]:
        return [out for _, out in self.targets]

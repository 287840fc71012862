"""Handing freed memory back to the OS between stages (used by the backends' lowering and by preflight), and
keeping large buffers out of the heap while an export runs."""

from __future__ import annotations

import atexit
import ctypes
import gc
from contextlib import contextmanager
from typing import Iterator


def release_memory() -> None:
    """Collect garbage and hand freed heap memory back to the OS (glibc ``malloc_trim``): a freed fp32 model
    otherwise stays in the process's RSS and adds to the next stage's peak."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


@contextmanager
def long_lived_frozen() -> Iterator[None]:
    """Within: :func:`freeze_long_lived` may move what is alive (imported modules, the loaded checkpoint) out of
    the collector's reach; on leaving, all of it is handed back. A full collection walks every tracked object
    (0.23 s with torch and transformers imported): an export runs about ten, explicit and automatic, and each
    skips what was frozen. Objects frozen still go when their last reference does."""
    freeze_long_lived()
    try:
        yield
    finally:
        gc.unfreeze()


def freeze_long_lived() -> None:
    """What is alive now outlives the export (see :func:`long_lived_frozen`)."""
    gc.freeze()


def skip_exit_collection() -> None:
    """When this process exits, freeze everything first, so the interpreter's last full collection has nothing
    to walk: with torch, transformers and the runtimes imported it walks millions of objects to free memory the
    OS takes back anyway (0.5 s after the imports alone, 1.1 s after an export). atexit handlers and weakref
    finalizers (temporary folders) still run; only garbage cycles are left to the OS."""
    atexit.unregister(gc.freeze)  # once, however often a CLI runs in one process (tests)
    atexit.register(gc.freeze)


M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
LARGE_BUFFER = 8 * 2**20


def map_large_buffers(threshold: int = LARGE_BUFFER) -> None:
    """Serve every allocation of ``threshold`` bytes or more with its own mapping (glibc ``mallopt``), returned to
    the OS the moment it is freed. glibc's default threshold rises to the largest block freed (up to 32 MiB), so
    after the first freed weight, weights and logits come from the heap, and a stage's freed tensors stay in the
    RSS the next stage adds to: on SmolLM2-135M's ONNX export, the eager parity pass peaked 117 MiB higher for it
    (1496 against 1379 MiB), at no measurable cost in time. Smaller buffers (activations) stay on the heap: mapping
    them too (128 KiB) cost 12% of the export's time. Process-wide; a no-op off glibc."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, threshold)
    except (OSError, AttributeError):
        pass

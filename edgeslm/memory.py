"""Handing freed memory back to the OS between stages (used by the backends' lowering and by preflight)."""

from __future__ import annotations

import ctypes
import gc


def release_memory() -> None:
    """Collect garbage and hand freed heap memory back to the OS (glibc ``malloc_trim``): a freed fp32 model
    otherwise stays in the process's RSS and adds to the next stage's peak."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass

"""Keep the terminal readable: upstream C++ runtimes log straight to file descriptors 1 and 2."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager


@contextmanager
def native_output_silenced():
    """Send fds 1/2 to /dev/null (or nothing, with EDGESLM_DEBUG=1); yield streams to the real stdout/stderr.

    Where stdout is not a real file descriptor (e.g. under click's test runner) nothing is moved.
    """
    try:
        real = sys.stdout.fileno() == 1 and sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        real = False
    if not real or os.environ.get("EDGESLM_DEBUG"):
        yield sys.stdout, sys.stderr
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    devnull = os.open(os.devnull, os.O_WRONLY)
    out, err = os.fdopen(os.dup(saved[1]), "w"), os.fdopen(os.dup(saved[2]), "w")
    try:
        for fd in (1, 2):
            os.dup2(devnull, fd)
        yield out, err
    finally:
        out.flush()
        err.flush()
        for fd, keep in saved.items():
            os.dup2(keep, fd)
            os.close(keep)
        os.close(devnull)
        out.close()
        err.close()

"""Tasks for worker-pool tests. Spawned workers import them by name, so they live in a
module of their own that imports nothing heavy at the top."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any


def square(x: int) -> int:
    return x * x


def fail_with(message: str) -> None:
    raise ValueError(message)


def crash() -> None:
    """Die the way a decoder bug does: a segmentation fault."""
    os.kill(os.getpid(), signal.SIGSEGV)


def sleep_then_return(seconds: float, value: Any) -> Any:
    time.sleep(seconds)
    return value


def own_pid() -> int:
    return os.getpid()


def decode_clips_or_misbehave(path: str, *args: Any, **kwargs: Any) -> Any:
    """``index.workers.decode_clips``, except that a file named ``crash*`` segfaults the
    worker and one named ``hang*`` never returns, as a broken decoder would."""
    from index.workers import decode_clips

    name = Path(path).name
    if name.startswith("crash"):
        crash()
    if name.startswith("hang"):
        time.sleep(3600)
    return decode_clips(path, *args, **kwargs)


def fail_on_start() -> None:
    raise RuntimeError("this worker cannot start")

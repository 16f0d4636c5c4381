"""Run a check script through Triton's interpreter (the kernels' arithmetic on the CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_in_triton_interpreter(script: str, timeout: int = 300) -> dict:
    """Run ``script`` with TRITON_INTERPRET=1 in a fresh interpreter from the
    project root (Triton reads the variable at import, hence the subprocess)
    and return the JSON object its last line of output prints. Skips the test
    where Triton is not installed; fails with the script's stderr if it fails."""
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])

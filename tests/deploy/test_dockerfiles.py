"""Both Dockerfiles linted by hadolint, and what the images promise: non-root, offline model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.deploy.tools import ROOT, run, tool

pytestmark = pytest.mark.deploy

DOCKERFILES = [ROOT / "Dockerfile", ROOT / "Dockerfile.encoder"]


def final_stage(path: Path) -> str:
    """The instructions after the last FROM."""
    return re.split(r"^FROM .*$", path.read_text(), flags=re.M)[-1]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint(path: Path) -> None:
    # Every finding fails, down to style.
    result = run([tool("hadolint"), "--failure-threshold", "style", "--no-color", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_reports_findings(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /tmp && pip install faust-streaming\n")
    result = run([tool("hadolint"), "--no-color", str(bad)])
    assert result.returncode != 0 and "DL3007" in result.stdout


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_runs_as_non_root_without_fetching_a_model(path: Path) -> None:
    stage = final_stage(path)
    (user,) = re.findall(r"^USER (\S+)$", stage, flags=re.M)
    assert user.split(":")[0] not in ("root", "0")
    assert re.search(r"^\s+HF_HUB_OFFLINE=1", stage, flags=re.M)
    assert "HEALTHCHECK" in stage and 'ENTRYPOINT ["streamrank"]' in stage


def test_encoder_image_is_cuda_fp16() -> None:
    text = (ROOT / "Dockerfile.encoder").read_text()
    assert re.search(r"^ARG CUDA_IMAGE=nvidia/cuda:\S+$", text, flags=re.M)
    stage = final_stage(ROOT / "Dockerfile.encoder")
    assert "STREAMRANK_ENCODER_DEVICE=cuda" in stage and "STREAMRANK_ENCODER_DTYPE=float16" in stage
    assert 'CMD ["encode-server", "--host", "0.0.0.0", "--port", "8080"]' in stage

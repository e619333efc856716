"""Dify's Python SDK for knowledge bases (`KnowledgeBaseClient` of dify-python-sdk 0.1.16, the
SDK Dify's docs point to; `dify-client` on PyPI stops before it) against a running server:
datasets, documents by text and by file, indexing status, hit testing, segments. The SDK lives
in `.venv/sdk-kb` (its package is also `dify_client`), so the calls run in a process of their
own (`tests/sdk-kb/knowledge_client.py`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests import support
from tests.e2e.conftest import Admin

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / ".venv" / "sdk-kb"


def run_sdk_script(script: str, *args: str) -> list[str]:
    """`tests/sdk-kb/<script> ARGS…` run on the newer SDK; the lines it printed, checked to
    start with the SDK's path and end with "ok"."""
    assert (SDK / "dify_client").is_dir(), "scripts/bootstrap installs the SDK into .venv/sdk-kb"
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "sdk-kb" / script), *args],
        env={**os.environ, "PYTHONPATH": str(SDK)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"sdk {SDK}"), output  # the SDK's copy, not dify-client 0.1.10
    assert lines[-1] == "ok", output
    return lines


def test_knowledge_base_client_end_to_end(
    stack: support.Stack, admin: Admin, tmp_path: Path
) -> None:
    key = admin.client.post("/console/api/datasets/api-keys").json()["data"]["token"]
    upload = tmp_path / "harbour.md"
    upload.write_text("# Harbour\n\nThe ferry to the island leaves from pier four at seven.\n")
    run_sdk_script("knowledge_client.py", f"{stack.base_url}/v1", key, str(upload))

"""`conduit dataset upload` against a running server, as its README line says: files into a
dataset (made with --create), each followed to its end; a broken file fails with its reason and
the exit status says so; progress as lines without a terminal, as bars with one."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tests import support
from tests.e2e.conftest import Admin
from tests.support import CONDUIT


def upload(stack: support.Stack, key: str, *args: str, env: dict[str, str] | None = None) -> (
    subprocess.CompletedProcess[str]
):  # fmt: skip
    return subprocess.run(
        [CONDUIT, "dataset", "upload", "--url", stack.base_url, *args],
        env={**os.environ, "CONDUIT_DATASET_KEY": key, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def test_upload_follows_each_file_to_its_end(
    stack: support.Stack, admin: Admin, tmp_path: Path
) -> None:
    key = admin.client.post("/console/api/datasets/api-keys").json()["data"]["token"]
    good = tmp_path / "harbour.md"
    good.write_text("# Harbour\n\nThe ferry leaves from pier four at seven every morning.\n")
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.7 this is not a pdf")

    missing = upload(stack, key, "--dataset", "Harbour docs", str(good))
    assert missing.returncode == 1
    assert "no dataset named 'Harbour docs' (add --create to make it)" in missing.stdout

    done = upload(stack, key, "--dataset", "Harbour docs", "--create", str(good), str(broken))
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("✓ harbour.md: indexed, 1 segments") for line in lines), lines
    failure = [line for line in lines if line.startswith("✗ broken.pdf: ")]
    assert failure and "broken.pdf" in failure[0][len("✗ broken.pdf: ") :], lines
    assert lines[-1] == "1 indexed, 1 failed"

    # The same dataset again (found by name), on a terminal: bars, and status 0 when all pass.
    again = upload(
        stack, key, "--dataset", "Harbour docs", str(good),
        env={"FORCE_COLOR": "1", "COLUMNS": "120"},
    )  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", again.stdout)
    assert "━" in shown  # a bar
    assert "✓ harbour.md" in shown
    assert shown.rstrip().endswith("1 indexed, 0 failed")
    with stack.client(key) as kb:
        (dataset,) = [
            d for d in kb.get("/v1/datasets").json()["data"] if d["name"] == "Harbour docs"
        ]
        assert dataset["document_count"] == 3

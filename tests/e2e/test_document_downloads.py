"""A document's original file through the Knowledge API: a signed link (no key, expiring,
always a download), and several documents' files in one zip; links cannot be forged or turned
to other files."""

from __future__ import annotations

import io
import time
import zipfile
from urllib.parse import parse_qs, urlsplit

import httpx

from tests import support
from tests.e2e.test_indexing import by_file, by_text, kb

__all__ = ["kb"]  # the fixture

assert_envelope = support.assert_envelope
NOTES = b"# Notes\n\nThe ferry leaves at seven.\n"


def test_download_links_and_zip(stack: support.Stack, kb: httpx.Client) -> None:
    dataset_id = kb.post("/v1/datasets", json={"name": f"D {time.monotonic_ns()}"}).json()["id"]
    settings = {"indexing_technique": "economy", "process_rule": {"mode": "automatic"}}
    first = by_file(kb, dataset_id, "notes.md", NOTES, settings)
    assert first.status_code == 200, first.text
    second = by_file(kb, dataset_id, "notes.md", b"# Other notes\n", settings)
    third = by_text(kb, dataset_id, name="story", text="Once upon a time.", **settings)
    ids = [first.json()["document"]["id"], second.json()["document"]["id"], third["document"]["id"]]

    link = kb.get(f"/v1/datasets/{dataset_id}/documents/{ids[0]}/download")
    assert link.status_code == 200, link.text
    url = link.json()["url"]
    with httpx.Client(timeout=10) as anonymous:
        got = anonymous.get(url)
        assert got.status_code == 200
        assert got.content == NOTES
        assert got.headers["content-disposition"].startswith("attachment")
        assert got.headers["x-content-type-options"] == "nosniff"
        forged = url.replace("sign=", "sign=0")
        assert_envelope(anonymous.get(forged), 403, "file_access_denied")
        # The signature is for this file only, and the app files' route does not serve it.
        parts = urlsplit(url)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        file_id = parts.path.split("/")[-2]
        assert_envelope(
            anonymous.get(f"{stack.base_url}/v1/files/{file_id}/file-preview", params=query),
            404,
            "file_not_found",
        )

    zipped = kb.post(
        f"/v1/datasets/{dataset_id}/documents/download-zip", json={"document_ids": ids}
    )
    assert zipped.status_code == 200, zipped.text
    assert zipped.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(zipped.content)) as archive:
        assert archive.namelist() == ["notes.md", "notes (2).md", "story.txt"]
        assert archive.read("notes.md") == NOTES
    assert_envelope(
        kb.post(f"/v1/datasets/{dataset_id}/documents/download-zip", json={"document_ids": []}),
        400,
        "invalid_param",
        "document_ids is required",
    )
    other = kb.post("/v1/datasets", json={"name": f"O {time.monotonic_ns()}"}).json()["id"]
    assert_envelope(kb.get(f"/v1/datasets/{other}/documents/{ids[0]}/download"), 404, "not_found")

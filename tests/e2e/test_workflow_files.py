"""A workflow given a file: the start form's file input takes an upload of the app (Dify's file
object, `upload_file_id`), and a document-extractor node reads its text as a dataset's
document is parsed; another app's file, a file by URL, or a type with no text fail the node
in words (HTTP 200, the run `failed`)."""

from __future__ import annotations

import pytest

from tests import support
from tests.e2e.conftest import Admin, ServiceApp
from tests.e2e.test_workflow_runs import workflow_app


@pytest.fixture
def extractor(service_stack: support.Stack, service_admin: Admin) -> ServiceApp:
    return workflow_app(service_stack, service_admin, "extract.yml")


def upload(app: ServiceApp, name: str, data: bytes, mime: str) -> str:
    response = app.client.post(
        "/files/upload", files={"file": (name, data, mime)}, data={"user": "files"}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def run(app: ServiceApp, doc: dict[str, object]) -> dict[str, object]:
    response = app.client.post("/workflows/run", json={"inputs": {"doc": doc}, "user": "files"})
    assert response.status_code == 200, response.text
    return dict(response.json()["data"])


def local(file_id: str) -> dict[str, object]:
    return {"type": "document", "transfer_method": "local_file", "upload_file_id": file_id}


def test_the_text_of_an_uploaded_document_is_extracted(extractor: ServiceApp) -> None:
    file_id = upload(
        extractor, "notes.md", b"# Notes\n\nThe meeting moved to Friday.\n", "text/markdown"
    )
    data = run(extractor, local(file_id))
    assert data["status"] == "succeeded", data
    assert "The meeting moved to Friday." in str(data["outputs"]["text"])  # type: ignore[index]


def test_files_the_extractor_cannot_read_fail_the_node_in_words(
    extractor: ServiceApp, service_stack: support.Stack, service_admin: Admin
) -> None:
    other = workflow_app(service_stack, service_admin, "extract.yml")
    foreign = upload(other, "other.txt", b"not yours", "text/plain")
    refused = run(extractor, local(foreign))
    assert refused["status"] == "failed"
    assert f"File {foreign} is not an upload of this app" in str(refused["error"])
    by_url = run(
        extractor,
        {"type": "document", "transfer_method": "remote_url", "url": "http://example.com/a.pdf"},
    )
    assert by_url["status"] == "failed" and "not fetched" in str(by_url["error"])
    image = upload(extractor, "pixel.png", b"\\x89PNG\\r\\n\\x1a\\n" + b"0" * 16, "image/png")
    no_text = run(extractor, local(image))
    assert no_text["status"] == "failed" and "png" in str(no_text["error"]).lower()

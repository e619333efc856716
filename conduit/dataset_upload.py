"""`conduit dataset upload`: files into a dataset through the Knowledge API of a running server
(as any client would: a dataset key, `create-by-file`, `indexing-status`), with a live line per
document (its stage, segments done of all) until each is indexed or has failed with its reason.

On a terminal the lines are rich progress bars; elsewhere (CI, a pipe) one printed line per
change of stage. Exit status 1 when any file failed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

DONE = ("completed", "error")


class UploadError(Exception):
    """Why the upload cannot start (printed as one line)."""


@dataclass
class Upload:
    path: Path
    document_id: str | None = None
    batch: str | None = None
    stage: str = "uploading"
    completed: int = 0
    total: int = 0
    error: str | None = None
    task: TaskID | None = None

    @property
    def finished(self) -> bool:
        return self.error is not None or self.stage in DONE


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if isinstance(body, dict) and body.get("message"):
        return f"{body['message']} ({body.get('code', response.status_code)})"
    return f"HTTP {response.status_code}"


def find_dataset(client: httpx.Client, name: str, *, create: bool, technique: str) -> str:
    """The id of the dataset called `name` (created when asked to)."""
    page = 1
    while True:
        response = client.get(
            "/datasets", params={"keyword": name, "limit": 100, "page": page, "include_all": "true"}
        )
        if response.status_code != 200:
            raise UploadError(f"cannot list datasets: {_message(response)}")
        body = response.json()
        for item in body.get("data", []):
            if item.get("name") == name:
                return str(item["id"])
        if not body.get("has_more"):
            break
        page += 1
    if not create:
        raise UploadError(f"no dataset named {name!r} (add --create to make it)")
    made = client.post("/datasets", json={"name": name, "indexing_technique": technique})
    if made.status_code != 200:
        raise UploadError(f"cannot create dataset {name!r}: {_message(made)}")
    return str(made.json()["id"])


def _submit(client: httpx.Client, dataset_id: str, upload: Upload, technique: str) -> None:
    settings = {"indexing_technique": technique, "process_rule": {"mode": "automatic"}}
    try:
        data = upload.path.read_bytes()
    except OSError as error:
        upload.error = f"cannot read the file: {error.strerror or error}"
        return
    response = client.post(
        f"/datasets/{dataset_id}/document/create-by-file",
        files={"file": (upload.path.name, data)},
        data={"data": json.dumps(settings)},
    )
    if response.status_code != 200:
        upload.error = _message(response)
        return
    body = response.json()
    upload.document_id, upload.batch = body["document"]["id"], body["batch"]
    upload.stage = str(body["document"].get("indexing_status") or "waiting")


def _poll(client: httpx.Client, dataset_id: str, upload: Upload) -> None:
    response = client.get(f"/datasets/{dataset_id}/documents/{upload.batch}/indexing-status")
    if response.status_code != 200:
        return  # a passing failure (the server restarting): the next poll tells
    for item in response.json().get("data", []):
        if item.get("id") == upload.document_id:
            upload.stage = str(item["indexing_status"])
            upload.completed = int(item.get("completed_segments") or 0)
            upload.total = int(item.get("total_segments") or 0)
            if upload.stage == "error":
                upload.error = str(item.get("error") or "indexing failed")
            elif item.get("delay_reason"):
                upload.stage = f"{upload.stage} (retrying: {item['delay_reason']})"


def run_upload(
    paths: Sequence[Path],
    *,
    dataset: str,
    create: bool,
    url: str,
    key: str,
    technique: str,
    interval: float = 0.5,
    timeout: float = 3600.0,
    console: Console | None = None,
) -> int:
    """Upload `paths` into the dataset called `dataset`; the exit status (1: any failed)."""
    console = console or Console(stderr=False)
    uploads = [Upload(path) for path in paths]
    with httpx.Client(
        base_url=url.rstrip("/") + "/v1",
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    ) as client:
        try:
            dataset_id = find_dataset(client, dataset, create=create, technique=technique)
        except (UploadError, httpx.HTTPError) as error:
            console.print(f"error: {error}", markup=False)
            return 1
        for upload in uploads:
            try:
                _submit(client, dataset_id, upload, technique)
            except httpx.HTTPError as error:
                upload.error = f"upload failed: {error}"
        if console.is_terminal:
            _follow_bars(client, dataset_id, uploads, console, interval, timeout)
        else:
            _follow_lines(client, dataset_id, uploads, console, interval, timeout)
    failed = [u for u in uploads if u.error is not None]
    ok = len(uploads) - len(failed)
    console.print(f"{ok} indexed, {len(failed)} failed", markup=False, highlight=False)
    return 1 if failed else 0


def _follow_lines(
    client: httpx.Client, dataset_id: str, uploads: list[Upload], console: Console,
    interval: float, timeout: float,
) -> None:  # fmt: skip
    said: dict[Path, str] = {}

    def say(upload: Upload) -> None:
        line = (
            f"✗ {upload.path.name}: {upload.error}"
            if upload.error is not None
            else f"✓ {upload.path.name}: indexed, {upload.total} segments"
            if upload.stage == "completed"
            else f"… {upload.path.name}: {upload.stage} {upload.completed}/{upload.total}"
        )
        key = line if upload.finished else f"{upload.stage}"
        if said.get(upload.path) != key:
            said[upload.path] = key
            console.print(line, markup=False, highlight=False)

    deadline = time.monotonic() + timeout
    for upload in uploads:
        say(upload)
    while not all(u.finished for u in uploads) and time.monotonic() < deadline:
        time.sleep(interval)
        for upload in uploads:
            if not upload.finished:
                _poll(client, dataset_id, upload)
                say(upload)
    _time_out(uploads, timeout)
    for upload in uploads:
        say(upload)


def _follow_bars(
    client: httpx.Client, dataset_id: str, uploads: list[Upload], console: Console,
    interval: float, timeout: float,
) -> None:  # fmt: skip
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=console) as progress:
        for upload in uploads:
            upload.task = progress.add_task(_describe(upload), total=None)
        deadline = time.monotonic() + timeout
        while True:
            for upload in uploads:
                if not upload.finished:
                    _poll(client, dataset_id, upload)
                assert upload.task is not None
                progress.update(
                    upload.task,
                    description=_describe(upload),
                    completed=upload.completed,
                    total=upload.total or None,
                )
            if all(u.finished for u in uploads) or time.monotonic() >= deadline:
                break
            time.sleep(interval)
        _time_out(uploads, timeout)
        for upload in uploads:
            assert upload.task is not None
            progress.update(upload.task, description=_describe(upload))


def _describe(upload: Upload) -> str:
    if upload.error is not None:
        return f"✗ {upload.path.name} · {upload.error}"
    if upload.stage == "completed":
        return f"✓ {upload.path.name}"
    return f"  {upload.path.name} · {upload.stage}"


def _time_out(uploads: list[Upload], timeout: float) -> None:
    for upload in uploads:
        if not upload.finished:
            upload.error = f"still {upload.stage} after {timeout:.0f} s (it goes on on the server)"

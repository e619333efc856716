"""One request to a URL a user gave, behind the SSRF guard (`infra/ssrf.py`): the host is
resolved and checked at the call, the checked address is the one connected to (its name in
`Host` and TLS's SNI), no redirect is followed, and the answer is read whole within one
deadline and up to a size (a trickle or a flood ends as an error, never a hang). Used where a
workspace's own service is called: external knowledge APIs, custom API tools."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from conduit.infra.ssrf import AllowList, resolve_target


class AnswerTooLarge(Exception):
    """The answer was longer than allowed."""


@dataclass(frozen=True, slots=True)
class Answer:
    status_code: int
    content: bytes
    content_type: str = ""

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


def request(
    method: str,
    url: str,
    allow: AllowList,
    *,
    field: str,
    headers: Mapping[str, str] | None = None,
    content: bytes | None = None,
    timeout: float,
    max_bytes: int,
) -> Answer:
    """The answer to `method url` (see the module's docstring). Raises the guard's
    `InvalidParam` (naming `field`) for a refused URL, `httpx.HTTPError` for a failed or slow
    request, `AnswerTooLarge` past `max_bytes`."""
    deadline = time.monotonic() + timeout
    target = resolve_target(url, allow, field=field)
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    with (
        httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client,
        client.stream(
            method,
            target.connect_url,
            content=content,
            headers={**(headers or {}), "Host": target.host_header},
            extensions=extensions,
        ) as response,
    ):
        body = bytearray()
        for chunk in response.iter_bytes():
            body.extend(chunk)
            if len(body) > max_bytes:
                raise AnswerTooLarge(f"more than {max_bytes} bytes")
            if time.monotonic() > deadline:  # a trickle: each read within the timeout
                raise httpx.ReadTimeout(f"no whole answer within {timeout:g} s")
        return Answer(response.status_code, bytes(body), response.headers.get("content-type", ""))

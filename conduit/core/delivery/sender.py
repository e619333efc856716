"""One signed POST of a callback body, to the address the SSRF check approved.

The URL is resolved and checked again here (the name may point elsewhere since it was
submitted: DNS rebinding), and the connection goes to that checked address: the URL's host is
replaced by it, the name travels as the Host header and, for https, as the TLS server name
(httpx's `sni_hostname` extension), so the certificate is still verified against the name.
Redirects are not followed (a redirect could lead anywhere). Blocking: a task's thread calls it.
"""

from __future__ import annotations

import functools
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import certifi
import httpx

from conduit.infra.ssrf import AllowList, UnresolvableHost, UnsafeUrl, resolve_target
from conduit.webhooks import sign

USER_AGENT = "Conduit-Webhooks/1"
_ERROR_CHARS = 500


@dataclass(frozen=True)
class AttemptResult:
    started_at: datetime
    duration_ms: int
    status_code: int | None = None
    retry_after: str | None = None
    error: str | None = None
    permanent: bool = False  # refused by the SSRF rules: no retry can help


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One verifying TLS context per process: building one (loading the CA bundle) took
    about 30 ms, which every attempt's client paid before its first byte."""
    return ssl.create_default_context(cafile=certifi.where())


def send_signed(
    url: str,
    *,
    body: bytes,
    msg_id: str,
    secrets: Sequence[str],
    allow: AllowList,
    timeout: float,
) -> AttemptResult:
    """POST `body` to `url`, signed with `secrets` (current first); never raises."""
    started_at = datetime.now(UTC)
    began = time.perf_counter()

    def result(
        *,
        status_code: int | None = None,
        retry_after: str | None = None,
        error: str | None = None,
        permanent: bool = False,
    ) -> AttemptResult:
        elapsed = int((time.perf_counter() - began) * 1000)
        return AttemptResult(started_at, elapsed, status_code, retry_after, error, permanent)

    try:
        target = resolve_target(url, allow)
    except UnsafeUrl as refused:
        return result(error=f"refused: {refused.message}", permanent=True)
    except UnresolvableHost as unresolved:
        return result(error=unresolved.message)
    headers = {
        **sign(list(secrets), msg_id=msg_id, body=body),
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Host": target.host_header,
    }
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    try:
        with (
            httpx.Client(
                timeout=timeout, follow_redirects=False, trust_env=False, verify=_tls_context()
            ) as client,
            client.stream(
                "POST", target.connect_url, content=body, headers=headers, extensions=extensions
            ) as response,
        ):
            return result(
                status_code=response.status_code,
                retry_after=response.headers.get("retry-after"),
                error=None if response.is_success else f"HTTP {response.status_code}",
            )
    except httpx.TimeoutException as error:
        return result(error=f"timed out after {timeout:g} s ({type(error).__name__})")
    except httpx.HTTPError as error:
        return result(error=f"{type(error).__name__}: {error}"[:_ERROR_CHARS])

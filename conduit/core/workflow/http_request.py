"""The workflow http-request node's request: built from the node's DSL `data`, sent to the
address the SSRF rules approved, answered with Dify's node outputs.

- The DSL is Dify's: `method`, `url`, `authorization` (api-key: bearer, basic or a custom
  header), `headers` and `params` as "key:value" lines, `body` of one of six types (`data` a
  list of {key, type, value, file} items, or a string in older DSL), `timeout`, `ssl_verify`.
  `{{#node.var#}}` references are filled by the caller's `render`; file variables are read
  with `lookup` and must carry their bytes (`content`/`data`, base64): a file known only by
  its `url` is refused rather than fetched.
- SSRF: every target (the URL, then each redirect hop: Dify follows redirects, so do we, at
  most `HttpLimits.max_redirects`) is resolved and checked by `infra/ssrf.py` (messages name
  `url`), and the connection goes to the checked address with the name as Host header and TLS
  server name, as the callback sender does: a name that re-resolves elsewhere (DNS
  rebinding) cannot move it. The client keeps no cookies and reads no proxy from the
  environment (a proxy would resolve the name itself).
- The response is read up to `max_response_bytes`; text is decoded by its charset (else UTF-8,
  replacing errors); a file-like response (an attachment, an image, audio, video, binary
  `application/*`) becomes one entry of `files`, its bytes base64-encoded, with `body` "".
- A 4xx/5xx is an output, not an error: the node's error strategy decides. `should_retry`
  says what Dify's retry_config would retry.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import json
import mimetypes
import re
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import Message
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpx

from conduit.core.delivery.sender import _tls_context
from conduit.core.workflow.conditions import FILE_IDENTITY
from conduit.infra.ssrf import (
    AllowList,
    CheckedTarget,
    Resolver,
    UnresolvableHost,
    UnsafeUrl,
    resolve_target_async,
    system_resolver,
)

FIELD = "url"
METHODS = frozenset({"get", "post", "put", "patch", "delete", "head", "options"})
# The Content-Type a body type implies when the node's headers name none (as Dify sends).
BODY_CONTENT_TYPES = {
    "json": "application/json",
    "x-www-form-urlencoded": "application/x-www-form-urlencoded",
    "raw-text": "text/plain",
}
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 field name
_TEXT_APPLICATION = ("json", "xml", "javascript", "x-www-form-urlencoded", "yaml", "graphql")
_TEXT_MARKERS = ("{", "[", "<", "function", "var ", "const ", "let ")
_FILE_MAIN_TYPES = frozenset({"application", "image", "audio", "video"})

Render = Callable[[str], str]
Lookup = Callable[[Sequence[str]], Any]


class HttpRequestFailed(Exception):
    """The request could not be made or answered. `error_type` is the name Dify gives the
    failure (a fail-branch exposes it); `retryable` marks what a retry can help."""

    def __init__(
        self, message: str, *, retryable: bool = False, error_type: str = "HttpRequestNodeError"
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.error_type = error_type


@dataclass(frozen=True)
class Timeouts:
    """Seconds to connect, to wait for each read, to wait for each write."""

    connect: float
    read: float
    write: float


# Dify's HTTP_REQUEST_MAX_{CONNECT,READ,WRITE}_TIMEOUT; a node that sets none gets these.
DIFY_TIMEOUT_CAPS = Timeouts(connect=10, read=600, write=600)


@dataclass(frozen=True)
class HttpLimits:
    max_response_bytes: int = 10 * 1024 * 1024
    max_timeouts: Timeouts = DIFY_TIMEOUT_CAPS
    default_timeouts: Timeouts = DIFY_TIMEOUT_CAPS
    max_redirects: int = 5  # 0: a redirect is returned as the response


DEFAULT_LIMITS = HttpLimits()


@dataclass
class _Request:
    """What the node asks for, with every reference filled; the target is not checked yet."""

    method: str
    url: httpx.URL
    headers: httpx.Headers
    body: dict[str, Any] = field(default_factory=dict)  # httpx's content/data/files argument
    auth_header: str | None = None
    timeouts: Timeouts = DIFY_TIMEOUT_CAPS
    verify: bool = True


def new_client(*, verify: bool = True) -> httpx.AsyncClient:
    """A client fit for `perform`: no redirects of its own, no proxy from the environment, no
    cookie kept from one request for the next."""
    return httpx.AsyncClient(
        verify=_tls_context() if verify else False,
        trust_env=False,
        follow_redirects=False,
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
    )


async def perform(
    node_data: Mapping[str, Any],
    render: Render,
    lookup: Lookup,
    *,
    allow: AllowList,
    limits: HttpLimits = DEFAULT_LIMITS,
    client: httpx.AsyncClient | None = None,
    resolver: Resolver = system_resolver,
) -> dict[str, Any]:
    """Make the node's request; Dify's outputs `{status_code, body, headers, files}`, or
    `HttpRequestFailed`. `client` (from `new_client`) is used unless the node skips TLS checks."""
    request = _build_request(node_data, render, lookup, limits)
    if client is not None and request.verify:
        return await _exchange(client, request, allow, limits, resolver)
    async with new_client(verify=request.verify) as own:
        return await _exchange(own, request, allow, limits, resolver)


def should_retry(outcome: Mapping[str, Any] | BaseException) -> bool:
    """Whether a retry_config retry is worth it: a response that is not 2xx (Dify fails the
    node on it once retries are on, 4xx included) or a failure marked retryable."""
    if isinstance(outcome, BaseException):
        return isinstance(outcome, HttpRequestFailed) and outcome.retryable
    return status_failure(outcome) is not None


def status_failure(outputs: Mapping[str, Any]) -> HttpRequestFailed | None:
    """The error Dify reports for a response that is not 2xx (when the node has an error
    strategy or retries), or None."""
    status = outputs.get("status_code")
    if isinstance(status, int) and 200 <= status < 300:
        return None
    return HttpRequestFailed(
        f"Request failed with status code {status}",
        retryable=True,
        error_type="HTTPResponseCodeError",
    )


# -- the request, from the DSL --------------------------------------------------------------


def _build_request(
    node_data: Mapping[str, Any], render: Render, lookup: Lookup, limits: HttpLimits
) -> _Request:
    method = str(node_data.get("method") or "get").lower()
    if method not in METHODS:
        raise HttpRequestFailed(
            f"Invalid HTTP method {node_data.get('method')!r}", error_type="InvalidHttpMethodError"
        )
    raw_url = node_data.get("url")
    if not isinstance(raw_url, str) or not raw_url.strip():
        raise HttpRequestFailed(f"{FIELD}: is required", error_type="InvalidURLError")
    try:
        url = httpx.URL(render(raw_url).strip())
    except httpx.InvalidURL as error:
        raise HttpRequestFailed(f"{FIELD}: {error}", error_type="InvalidURLError") from None
    params = [(render(key), render(value)) for key, value in _lines(_text(node_data.get("params")))]
    if params:
        url = url.copy_merge_params(tuple(params))
    headers = _headers(render(_text(node_data.get("headers"))))
    auth_header = _authorize(headers, node_data.get("authorization"), render)
    body = _body(node_data.get("body"), headers, render, lookup)
    ssl_verify = node_data.get("ssl_verify")
    if ssl_verify is not None and not isinstance(ssl_verify, bool):
        raise HttpRequestFailed("ssl_verify must be true or false")
    return _Request(
        method=method.upper(),
        url=url,
        headers=headers,
        body=body,
        auth_header=auth_header,
        timeouts=_timeouts(node_data.get("timeout"), limits),
        verify=ssl_verify is not False,
    )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _lines(text: str) -> Iterator[tuple[str, str]]:
    """Dify's "key:value" lines (params, old form bodies): blank lines and empty keys are
    skipped, a line without ':' is a key with an empty value."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip():
            yield key.strip(), value.strip()


def _headers(text: str) -> httpx.Headers:
    headers = httpx.Headers()
    for line in text.splitlines():
        if not line.strip():
            continue
        key, _, value = line.partition(":")
        if not _TOKEN.match(key.strip()):
            raise HttpRequestFailed(
                f"Invalid header line {line.strip()!r} (expected key:value, the key a header "
                "name: letters, digits and !#$%&'*+-.^_`|~)"
            )
        headers[key.strip()] = value.strip()  # httpx encodes it as UTF-8
    return headers


def _authorize(headers: httpx.Headers, authorization: Any, render: Render) -> str | None:
    """Add the api-key header the node asks for; its name, or None."""
    if not isinstance(authorization, Mapping) or authorization.get("type") != "api-key":
        return None
    config = authorization.get("config")
    if not isinstance(config, Mapping):
        raise HttpRequestFailed(
            "authorization: an api-key needs its config", error_type="AuthorizationConfigError"
        )
    api_key = render(_text(config.get("api_key")))
    if not api_key.strip():
        raise HttpRequestFailed(
            "authorization: the API key is empty", error_type="AuthorizationConfigError"
        )
    name = _text(config.get("header")).strip() or "Authorization"
    kind = config.get("type")
    if kind == "bearer":
        value = f"Bearer {api_key}"
    elif kind == "basic":
        # Dify encodes "user:password"; a key without ':' is taken as already encoded.
        encoded = base64.b64encode(api_key.encode()).decode() if ":" in api_key else api_key
        value = f"Basic {encoded}"
    elif kind == "custom":
        value = api_key
    else:
        raise HttpRequestFailed(
            f"authorization: unknown api-key type {kind!r} (basic, bearer or custom)",
            error_type="AuthorizationConfigError",
        )
    headers[name] = value
    return name


def _body(body: Any, headers: httpx.Headers, render: Render, lookup: Lookup) -> dict[str, Any]:
    """httpx's body argument for the node's body; sets the Content-Type it implies."""
    if not isinstance(body, Mapping):
        return {}
    kind = body.get("type") or "none"
    items = _items(body.get("data"), kind)
    if kind in BODY_CONTENT_TYPES and "content-type" not in headers:
        headers["Content-Type"] = BODY_CONTENT_TYPES[kind]
    if kind == "none":
        return {"content": b""}
    if kind == "raw-text":
        return {"content": render(_single(items, kind).get("value") or "").encode()}
    if kind == "json":
        text = render(_single(items, kind).get("value") or "")
        try:
            parsed = json.loads(text, strict=False)
        except json.JSONDecodeError as error:
            raise HttpRequestFailed(
                f"Failed to parse JSON: {text} ({error.msg} at line {error.lineno} column "
                f"{error.colno})",
                error_type="RequestBodyError",
            ) from None
        content = json.dumps(parsed, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return {"content": content.encode()}
    if kind == "x-www-form-urlencoded":
        return {"data": {render(_key(item)): render(_value(item)) for item in items}}
    if kind == "form-data":
        headers.pop("content-type", None)  # the boundary is httpx's to choose
        return _multipart(items, headers, render, lookup)
    if kind == "binary":
        selector = _single(items, kind).get("file") or []
        value = _find(lookup, selector)
        if value is None:
            raise HttpRequestFailed(
                f"Cannot fetch the file with selector {list(selector)}", error_type="FileFetchError"
            )
        first = value[0] if isinstance(value, list) and value else value
        return {"content": _file_bytes(first, selector)[1]}
    raise HttpRequestFailed(f"Unknown body type {kind!r}", error_type="RequestBodyError")


def _items(data: Any, kind: str) -> list[Mapping[str, Any]]:
    """The body's items; older DSL gives a string (for the form types, "key:value" lines)."""
    if not data:
        return []
    if isinstance(data, str):
        if kind in ("x-www-form-urlencoded", "form-data"):
            return [{"key": k, "type": "text", "value": v} for k, v in _lines(data)]
        return [{"key": "", "type": "text", "value": data}]
    if not isinstance(data, list) or not all(isinstance(item, Mapping) for item in data):
        raise HttpRequestFailed("body.data must be a list of items", error_type="RequestBodyError")
    return data


def _single(items: list[Mapping[str, Any]], kind: str) -> Mapping[str, Any]:
    if len(items) != 1:
        raise HttpRequestFailed(
            f"A {kind} body has exactly one item (found {len(items)})",
            error_type="RequestBodyError",
        )
    return items[0]


def _key(item: Mapping[str, Any]) -> str:
    return _text(item.get("key"))


def _value(item: Mapping[str, Any]) -> str:
    return _text(item.get("value"))


def _multipart(
    items: list[Mapping[str, Any]], headers: httpx.Headers, render: Render, lookup: Lookup
) -> dict[str, Any]:
    # Text fields are parts without a filename, so the body is multipart with or without files
    # (httpx would send text-only fields urlencoded).
    texts = {
        render(_key(item)): render(_value(item)) for item in items if item.get("type") != "file"
    }
    parts: list[tuple[str, tuple[str | None, bytes] | tuple[str | None, bytes, str]]] = [
        (name, (None, value.encode())) for name, value in texts.items()
    ]
    for item in items:
        if item.get("type") != "file":
            continue
        selector = item.get("file") or []
        value = _find(lookup, selector)
        # As in Dify, a variable that holds no file adds no part.
        for file in value if isinstance(value, list) else [value]:
            if isinstance(file, Mapping):
                parts.append((render(_key(item)), _file_bytes(file, selector)))
    if parts:
        return {"files": parts}
    boundary = secrets.token_hex(16)
    headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
    return {"content": f"--{boundary}--\r\n".encode()}


def _find(lookup: Lookup, selector: Sequence[str]) -> Any:
    """The variable's value, None when it is missing (`lookup` may raise a `LookupError`)."""
    if not selector:
        return None
    try:
        return lookup(selector)
    except LookupError:
        return None


def _file_bytes(file: Any, selector: Sequence[str]) -> tuple[str | None, bytes, str]:
    """(filename, bytes, mime type) of a file variable that carries its bytes."""
    where = ".".join(str(part) for part in selector)
    if not isinstance(file, Mapping):
        raise HttpRequestFailed(f"The variable {where} is not a file", error_type="FileFetchError")
    name = file.get("filename") or file.get("name")
    payload = file.get("content", file.get("data"))
    if isinstance(payload, bytes | bytearray):
        content = bytes(payload)
    elif isinstance(payload, str):
        try:
            content = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise HttpRequestFailed(
                f"The file {name or where} has content that is not base64",
                error_type="FileFetchError",
            ) from None
    elif file.get("url") or file.get("remote_url"):
        raise HttpRequestFailed(
            f"The file {name or where} is known only by its url, which this node does not fetch",
            error_type="FileFetchError",
        )
    else:
        raise HttpRequestFailed(
            f"The file {name or where} has no content", error_type="FileFetchError"
        )
    mime = file.get("mime_type") or file.get("mimetype") or "application/octet-stream"
    return (str(name) if name else None, content, str(mime))


def _timeouts(raw: Any, limits: HttpLimits) -> Timeouts:
    """The node's timeouts (a missing or zero one takes the default), each under its cap."""
    given = raw if isinstance(raw, Mapping) else {}

    def pick(name: str) -> float:
        value = given.get(name)
        default: float = getattr(limits.default_timeouts, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            value = default
        cap: float = getattr(limits.max_timeouts, name)
        return float(min(value, cap))

    return Timeouts(connect=pick("connect"), read=pick("read"), write=pick("write"))


# -- the exchange ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Fetched:
    """A `fetch`'s answer: where it ended (after redirects), its status, headers and body."""

    url: httpx.URL
    status_code: int
    headers: httpx.Headers
    content: bytes

    @property
    def mime_type(self) -> str:
        return str(self.headers.get("content-type", "")).split(";")[0].strip().lower()

    @property
    def filename(self) -> str:
        """The name the answer gives its body (Content-Disposition), else the URL's last
        segment, else "file" with the extension of its media type."""
        disposition = _disposition(self.headers.get("content-disposition", ""))
        named = disposition.get_filename() if disposition is not None else None
        last = self.url.path.rsplit("/", 1)[-1]
        return str(named or last or "file" + (mimetypes.guess_extension(self.mime_type) or ""))


async def fetch(
    url: str,
    *,
    allow: AllowList,
    limits: HttpLimits = DEFAULT_LIMITS,
    method: str = "GET",
    resolver: Resolver = system_resolver,
) -> Fetched:
    """One GET (or HEAD) of `url` by this module's rules (SSRF checks of every hop, redirects
    followed, the body read up to `limits.max_response_bytes`): for a file asked for by URL.
    `HttpRequestFailed` says why it could not be fetched."""
    try:
        target = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as error:
        raise HttpRequestFailed(f"{FIELD}: not a valid URL ({error})") from None
    request = _Request(method=method, url=target, headers=httpx.Headers(),
                       timeouts=limits.default_timeouts)  # fmt: skip
    async with new_client() as client:
        response, content, final = await _send(client, request, allow, limits, resolver)
    return Fetched(final, response.status_code, response.headers, content)


async def _exchange(
    client: httpx.AsyncClient,
    request: _Request,
    allow: AllowList,
    limits: HttpLimits,
    resolver: Resolver,
) -> dict[str, Any]:
    response, content, url = await _send(client, request, allow, limits, resolver)
    return _outputs(response, content, url)


async def _send(
    client: httpx.AsyncClient,
    request: _Request,
    allow: AllowList,
    limits: HttpLimits,
    resolver: Resolver,
) -> tuple[httpx.Response, bytes, httpx.URL]:
    method, url, body, headers = request.method, request.url, request.body, request.headers
    timeout = httpx.Timeout(
        connect=request.timeouts.connect,
        read=request.timeouts.read,
        write=request.timeouts.write,
        pool=request.timeouts.connect,
    )
    hops = 0
    while True:
        target = await _checked(url, allow, resolver)
        sent = headers.copy()
        sent["Host"] = target.host_header
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        try:
            outgoing = client.build_request(
                method,
                url.copy_with(host=target.address, port=target.port),
                headers=sent,
                timeout=timeout,
                extensions=extensions,
                **body,
            )
            response = await client.send(outgoing, stream=True, follow_redirects=False)
            try:
                location = response.headers.get("location")
                if response.is_redirect and location and limits.max_redirects > 0:
                    hops += 1
                    if hops > limits.max_redirects:
                        raise HttpRequestFailed(
                            f"Too many redirects (more than {limits.max_redirects})"
                        )
                    try:
                        following = url.join(location)
                    except httpx.InvalidURL as error:
                        raise HttpRequestFailed(
                            f"{FIELD}: the redirect to {location!r} is not a valid URL ({error})",
                            error_type="InvalidURLError",
                        ) from None
                    method, body, headers = _redirected(
                        response.status_code,
                        method,
                        body,
                        headers,
                        request.auth_header,
                        url,
                        following,
                    )
                    url = following
                    continue
                content = await _read_limited(response, limits.max_response_bytes, method)
            finally:
                await response.aclose()
        except httpx.HTTPError as error:
            raise _transport_failure(error, target.host, request.timeouts) from None
        return response, content, url


async def _checked(url: httpx.URL, allow: AllowList, resolver: Resolver) -> CheckedTarget:
    # Only scheme, host, port and path are checked: the query is the server's business (and
    # a long one would break the URL length rule meant for callbacks).
    bare = str(url.copy_with(query=None, fragment=None))
    try:
        return await resolve_target_async(bare, allow, resolver=resolver, field=FIELD)
    except UnsafeUrl as refused:
        raise HttpRequestFailed(refused.message, error_type="InvalidURLError") from None
    except UnresolvableHost as unresolved:
        raise HttpRequestFailed(unresolved.message, retryable=True) from None


def _redirected(
    status: int,
    method: str,
    body: dict[str, Any],
    headers: httpx.Headers,
    auth_header: str | None,
    old: httpx.URL,
    new: httpx.URL,
) -> tuple[str, dict[str, Any], httpx.Headers]:
    """The next hop's method, body and headers, by the rules browsers (and httpx) follow."""
    headers = headers.copy()
    changes = (status in (302, 303) and method != "HEAD") or (status == 301 and method == "POST")
    if changes and method != "GET":
        method, body = "GET", {}
        for name in ("content-type", "content-length", "transfer-encoding"):
            headers.pop(name, None)
    upgraded = old.scheme == "http" and new.scheme == "https" and old.host == new.host
    if (old.scheme, old.host, old.port) != (new.scheme, new.host, new.port) and not upgraded:
        # Credentials stay with the origin they were meant for.
        for name in {"authorization", (auth_header or "authorization").lower()}:
            headers.pop(name, None)
    return method, body, headers


async def _read_limited(response: httpx.Response, limit: int, method: str) -> bytes:
    declared = response.headers.get("content-length", "")
    # A HEAD answer declares the length of a body it does not send.
    if method != "HEAD" and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    content = bytearray()
    async for chunk in response.aiter_bytes():
        content += chunk
        if len(content) > limit:
            raise _too_large(limit)
    return bytes(content)


def _too_large(limit: int) -> HttpRequestFailed:
    return HttpRequestFailed(
        f"Response body is larger than {limit} bytes", error_type="ResponseSizeError"
    )


def _transport_failure(error: httpx.HTTPError, host: str, timeouts: Timeouts) -> HttpRequestFailed:
    detail = str(error) or type(error).__name__
    if isinstance(error, httpx.TimeoutException):
        phase = {
            httpx.ConnectTimeout: "connect",
            httpx.ReadTimeout: "read",
            httpx.WriteTimeout: "write",
        }.get(type(error), "pool")
        seconds = getattr(timeouts, phase) if phase != "pool" else timeouts.connect
        return HttpRequestFailed(f"Request timed out after {seconds:g} s ({phase})", retryable=True)
    if isinstance(error, httpx.ConnectError):
        # A certificate that does not verify will not verify on the next try either.
        retryable = "CERTIFICATE_VERIFY_FAILED" not in detail
        return HttpRequestFailed(f"Could not connect to {host}: {detail}", retryable=retryable)
    if isinstance(error, httpx.ReadError | httpx.WriteError | httpx.RemoteProtocolError):
        return HttpRequestFailed(f"The connection to {host} failed: {detail}", retryable=True)
    return HttpRequestFailed(f"The request to {host} failed: {detail}")


# -- the outputs ----------------------------------------------------------------------------


def _outputs(response: httpx.Response, content: bytes, url: httpx.URL) -> dict[str, Any]:
    headers = dict(response.headers)  # names lower-cased, repeated ones joined by ", "
    content_type = response.headers.get("content-type", "")
    disposition = _disposition(response.headers.get("content-disposition", ""))
    if _is_file(content_type, disposition, content):
        return {
            "status_code": response.status_code,
            "body": "",
            "headers": headers,
            "files": [_file_output(content, content_type, disposition, url)],
        }
    try:
        text = content.decode(response.charset_encoding or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        text = content.decode("utf-8", errors="replace")
    return {"status_code": response.status_code, "body": text, "headers": headers, "files": []}


def _disposition(value: str) -> Message | None:
    if not value:
        return None
    message = Message()
    message["content-disposition"] = value
    return message


def _is_file(content_type: str, disposition: Message | None, content: bytes) -> bool:
    """Dify's test: an attachment (or a named part) is a file; text/* (but CSV) and textual
    application/* types are not; otherwise the media type's main type decides."""
    if disposition is not None and (
        disposition.get_content_disposition() == "attachment" or disposition.get_filename()
    ):
        return True
    mime = content_type.split(";")[0].strip().lower()
    if mime.startswith("text/"):
        return "csv" in mime
    if mime.startswith("application/") and (
        any(kind in mime for kind in _TEXT_APPLICATION) or _looks_like_text(content)
    ):
        return False
    extension = mimetypes.guess_extension(mime) if mime else None
    known = mimetypes.guess_type(f"x{extension}")[0] if extension else None
    if known:
        return known.split("/")[0] in _FILE_MAIN_TYPES
    return any(kind in mime for kind in ("image/", "audio/", "video/"))


def _looks_like_text(content: bytes) -> bool:
    try:  # the sample may end inside a character: not final
        sample = codecs.getincrementaldecoder("utf-8")().decode(content[:1024], final=False)
    except UnicodeDecodeError:
        return False
    return any(marker in sample for marker in _TEXT_MARKERS)


def _file_output(
    content: bytes, content_type: str, disposition: Message | None, url: httpx.URL
) -> dict[str, Any]:
    """A response file as a file variable (the engine's file dict) that carries its bytes as
    base64 `content`, which `lookup` accepts: a later node can send it on. Not stored: no
    `related_id` or `url` yet."""
    named = disposition.get_filename() if disposition is not None else None
    mime = (
        (mimetypes.guess_type(named)[0] if named else None)
        or content_type.split(";")[0].strip().lower()
        or "application/octet-stream"
    )
    filename = (
        named or url.path.rsplit("/", 1)[-1] or "file" + (mimetypes.guess_extension(mime) or "")
    )
    main = mime.split("/")[0]
    return {
        "dify_model_identity": FILE_IDENTITY,
        "type": main if main in ("image", "audio", "video") else "document",
        "transfer_method": "tool_file",
        "related_id": None,
        "url": None,
        "filename": filename,
        "extension": "." + filename.rsplit(".", 1)[-1] if "." in filename else "",
        "mime_type": mime,
        "size": len(content),
        "content": base64.b64encode(content).decode("ascii"),
    }

"""Custom API tools (Dify's "custom tools"): a workspace's own HTTP service described by an
OpenAPI 3 document, each operation a tool an agent (or a workflow's tool node) may call.

`parse` reads the document (JSON or YAML): the server (`servers[0].url`, an absolute http(s)
URL), and per operation its name (`operationId`, else the method and path), description and
parameters — `path`, `query`, `header` and `cookie` parameters, and the top-level properties
of an `application/json` request body (`$ref`s to `components/schemas` followed). What cannot
be served is a `SchemaError` naming it.

`ApiTool.tool()` is the operation as a `Tool`: its call fills the path, the query, the
headers and the JSON body from the arguments, adds the provider's key, and sends it behind
the SSRF guard (`infra/outbound.py`); a 2xx answer's text is the tool's answer, anything else
a `ToolError` with the status and the start of the body (the model reads it).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx
import yaml

from conduit.core.tools.base import ParameterType, Tool, ToolError, ToolParameter
from conduit.errors import ConduitError
from conduit.infra import outbound
from conduit.infra.ssrf import AllowList

MAX_SCHEMA = 1024 * 1024  # characters of a schema
MAX_YAML = 256 * 1024  # characters of a schema written in YAML (slower to read than JSON)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's, when built with it
logger = logging.getLogger(__name__)
# Headers the request itself sets: a parameter may not.
_RESERVED_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "content-type", "connection", "cookie"}
)
MAX_OPERATIONS = 100
MAX_PARAMETERS = 100  # of one operation
METHODS = ("get", "post", "put", "patch", "delete", "head")
LOCATIONS = ("path", "query", "header", "cookie", "body")
TIMEOUT = 10.0  # each phase of a call (connect, each read); the whole within the agent's limit
MAX_ANSWER = 1024 * 1024
_NAME = re.compile(r"[^A-Za-z0-9_-]+")


class SchemaError(ValueError):
    """The document cannot be served as tools: the message says why."""


@dataclass(frozen=True)
class ApiParameter:
    name: str
    location: str  # path | query | header | cookie | body
    type: str  # string | number | boolean | json
    required: bool
    description: str = ""
    default: Any = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "in": self.location,
            "type": self.type,
            "required": self.required,
            "description": self.description,
            "default": self.default,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ApiParameter:
        return cls(
            str(data["name"]),
            str(data.get("in") or "query"),
            str(data.get("type") or "string"),
            bool(data.get("required")),
            str(data.get("description") or ""),
            data.get("default"),
        )


@dataclass(frozen=True)
class ApiOperation:
    """One operation of the document: a tool."""

    name: str
    method: str
    path: str
    description: str
    parameters: tuple[ApiParameter, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "operation_id": self.name,
            "method": self.method,
            "path": self.path,
            "summary": self.description,
            "parameters": [p.to_json() for p in self.parameters],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ApiOperation:
        return cls(
            str(data["operation_id"]),
            str(data["method"]),
            str(data["path"]),
            str(data.get("summary") or ""),
            tuple(ApiParameter.from_json(p) for p in data.get("parameters") or []),
        )


@dataclass(frozen=True)
class ParsedSchema:
    server_url: str
    operations: tuple[ApiOperation, ...]


def parse(text: Any) -> ParsedSchema:
    """The document's server and operations (see the module's docstring)."""
    if not isinstance(text, str) or not text.strip():
        raise SchemaError("schema: must be an OpenAPI 3 document (JSON or YAML)")
    if len(text) > MAX_SCHEMA:
        raise SchemaError(f"schema: must be at most {MAX_SCHEMA} characters")
    _storable(text)
    try:
        return _parse(text)
    except SchemaError:
        raise
    except (ValueError, TypeError, AttributeError, KeyError, IndexError, RecursionError) as error:
        logger.warning("an OpenAPI document could not be read", exc_info=True)
        raise SchemaError(
            f"schema: not a document this server can read ({type(error).__name__})"
        ) from None


def _storable(text: str) -> None:
    """No NUL and no lone surrogate (neither can be stored, nor written as JSON)."""
    if "\x00" in text or "\\u0000" in text:
        raise SchemaError("schema: must not contain NUL characters (\\u0000)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise SchemaError("schema: holds a character that is not Unicode text") from None


def _load(text: str) -> Any:
    """The document as JSON, else as YAML without anchors and aliases (an alias repeats a
    part of the document without its characters: a small document could stand for a huge
    one)."""
    try:
        document = json.loads(text)
    except ValueError:
        document = _yaml(text)
    # Strings the JSON escapes held (a surrogate, a NUL) are refused as the text's are.
    _storable(json.dumps(document, ensure_ascii=False, default=str))
    return document


def _yaml(text: str) -> Any:
    if len(text) > MAX_YAML:
        raise SchemaError(f"schema: a YAML document must be at most {MAX_YAML} characters")
    try:
        for event in yaml.parse(text, Loader=_LOADER):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise SchemaError("schema: YAML anchors and aliases (& and *) are not read")
        return yaml.load(text, Loader=_LOADER)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as error:
        raise SchemaError(f"schema: neither JSON nor YAML ({error})") from None


def _parse(text: str) -> ParsedSchema:
    document = _load(text)
    if not isinstance(document, dict):
        raise SchemaError("schema: must be an OpenAPI 3 document (an object)")
    version = str(document.get("openapi") or "")
    if not version.startswith("3."):
        found = "Swagger 2" if document.get("swagger") else repr(version or None)
        raise SchemaError(f"schema: openapi must be a 3.x version (found {found})")
    servers = document.get("servers")
    first = servers[0] if isinstance(servers, list) and servers else None
    url = first.get("url") if isinstance(first, dict) else None
    if not isinstance(url, str):
        raise SchemaError("schema: servers[0].url is required (where the API is)")
    server_url = _server(url)
    paths = document.get("paths")
    if not isinstance(paths, dict) or not paths:
        raise SchemaError("schema: paths must list at least one operation")
    found_components = document.get("components")
    components: dict[str, Any] = found_components if isinstance(found_components, dict) else {}
    operations: list[ApiOperation] = []
    for path, item in paths.items():
        if not isinstance(item, dict):
            continue
        if not isinstance(path, str) or not path.startswith("/"):
            raise SchemaError(f"schema: path {path!r} must start with /")
        found_shared = item.get("parameters")
        shared: list[Any] = found_shared if isinstance(found_shared, list) else []
        for method in METHODS:
            operation = item.get(method)
            if isinstance(operation, dict):
                if len(operations) == MAX_OPERATIONS:
                    raise SchemaError(f"schema: at most {MAX_OPERATIONS} operations")
                operations.append(_operation(path, method, operation, shared, components))
    if not operations:
        raise SchemaError("schema: paths must list at least one operation")
    return _named(server_url, operations)


def _server(url: str) -> str:
    """`servers[0].url`, an absolute http(s) URL with nothing but a host, a port and a path
    (no user, query, fragment or `{variable}`)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SchemaError(f"schema: servers[0].url must be an absolute http(s) URL, not {url!r}")
    if any(mark in url for mark in ("@", "?", "#", "{")):
        raise SchemaError(
            f"schema: servers[0].url must name only a host, a port and a path, not {url!r}"
        )
    parts.port  # noqa: B018 (a bad port raises ValueError here, not at the first call)
    return url.rstrip("/")


def _named(server_url: str, operations: list[ApiOperation]) -> ParsedSchema:
    names = [op.name for op in operations]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise SchemaError(f"schema: operationId {twice[0]!r} is used more than once")
    return ParsedSchema(server_url, tuple(operations))


def _operation(
    path: str,
    method: str,
    operation: dict[str, Any],
    shared: list[Any],
    components: dict[str, Any],
) -> ApiOperation:
    # Without an operationId, Dify's name: the path's word characters, then the method.
    raw = operation.get("operationId")
    name = (
        _NAME.sub("_", raw).strip("_")[:64]
        if isinstance(raw, str) and raw
        else f"{re.sub(r'[^A-Za-z0-9_-]', '', path)}_{method}"[:64]
    )
    if not name:
        raise SchemaError(f"schema: {method.upper()} {path} has no usable operationId")
    where = f"schema: {method.upper()} {path}"
    parameters: dict[tuple[str, str], ApiParameter] = {}
    own = operation.get("parameters") or []
    if not isinstance(own, list) or len(shared) + len(own) > MAX_PARAMETERS:
        raise SchemaError(f"{where}: parameters must be a list of at most {MAX_PARAMETERS}")
    for raw in [*shared, *own]:
        found = _resolved(raw, components, where)
        if not isinstance(found, dict) or not isinstance(found.get("name"), str):
            raise SchemaError(f"{where}: every parameter needs a name")
        location = str(found.get("in") or "query")
        if location not in LOCATIONS[:4]:
            raise SchemaError(f"{where}: parameter {found['name']!r} is in {location!r}")
        if location == "header" and (
            not header_name(found["name"]) or found["name"].lower() in _RESERVED_HEADERS
        ):
            raise SchemaError(f"{where}: {found['name']!r} cannot be a header parameter")
        schema = _resolved(found.get("schema") or {}, components, where)
        parameters[(location, found["name"])] = ApiParameter(
            name=found["name"],
            location=location,
            type=_type(schema),
            required=bool(found.get("required")) or location == "path",
            description=str(found.get("description") or schema.get("description") or "")[:1024],
            default=_default(schema),
        )
    body = _resolved(operation.get("requestBody") or {}, components, where)
    content = body.get("content") if isinstance(body, dict) else None
    json_body = content.get("application/json") if isinstance(content, dict) else None
    if isinstance(json_body, dict):
        schema = _resolved(json_body.get("schema") or {}, components, where)
        wanted = schema.get("required") if isinstance(schema, dict) else None
        required = {r for r in wanted if isinstance(r, str)} if isinstance(wanted, list) else set()
        properties = schema.get("properties") if isinstance(schema, dict) else None
        if not isinstance(properties, dict):
            properties = {}
        if len(parameters) + len(properties) > MAX_PARAMETERS:
            raise SchemaError(f"{where}: at most {MAX_PARAMETERS} parameters")
        for prop, raw in properties.items():
            prop_schema = _resolved(raw, components, where)
            parameters[("body", str(prop))] = ApiParameter(
                name=str(prop),
                location="body",
                type=_type(prop_schema),
                required=prop in required,
                description=str(prop_schema.get("description") or "")[:1024],
                default=_default(prop_schema),
            )
    names = [p.name for p in parameters.values()]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise SchemaError(f"{where}: two parameters are called {twice[0]!r}")
    description = str(operation.get("description") or operation.get("summary") or name)
    return ApiOperation(name, method, path, description[:1024], tuple(parameters.values()))


def _resolved(value: Any, components: dict[str, Any], where: str, depth: int = 0) -> Any:
    """`value`, its `$ref` (within the document: `#/components/...`) followed."""
    if not isinstance(value, dict) or "$ref" not in value:
        return value if isinstance(value, dict) else {}
    reference = str(value["$ref"])
    if depth > 10 or not reference.startswith("#/components/"):
        raise SchemaError(f"{where}: $ref {reference!r} must point into #/components/")
    found: Any = components
    for part in reference.removeprefix("#/components/").split("/"):
        found = found.get(part) if isinstance(found, dict) else None
    if not isinstance(found, dict):
        raise SchemaError(f"{where}: $ref {reference!r} points to nothing")
    return _resolved(found, components, where, depth + 1)


def _default(schema: Any) -> Any:
    """A parameter's default, when it is a plain value JSON keeps as it is."""
    value = schema.get("default") if isinstance(schema, dict) else None
    if isinstance(value, bool | str) or (isinstance(value, float) and math.isfinite(value)):
        return value
    if isinstance(value, int) and -(2**53) <= value <= 2**53:
        return value
    return None


def _type(schema: Any) -> str:
    kind = schema.get("type") if isinstance(schema, dict) else None
    if kind in ("integer", "number"):
        return "number"
    if kind == "boolean":
        return "boolean"
    if kind in ("object", "array"):
        return "json"
    return "string"


def _parameter_type(kind: str) -> ParameterType:
    return {"number": "number", "boolean": "boolean", "json": "json"}.get(kind, "string")  # type: ignore[return-value]


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,255}$")


def header_name(text: str) -> bool:
    """Whether `text` is an HTTP header's name (token characters)."""
    return bool(_HEADER_NAME.match(text))


def _header_value(text: str) -> bool:
    return all(" " <= char <= "~" for char in text)


def key_value(text: str) -> bool:
    """Whether a key can go in a header (printable ASCII, no line breaks)."""
    return _header_value(text)


@dataclass(frozen=True)
class ApiAuth:
    """How the provider's key goes with each call (Dify's credentials): none, or `api_key`
    in the header `header`, as `Bearer <key>`, `Basic <key>` or the key itself (custom)."""

    auth_type: str = "none"  # none | api_key
    header: str = "Authorization"
    prefix: str = "custom"  # bearer | basic | custom
    key: str = field(default="", repr=False)

    def headers(self) -> dict[str, str]:
        if self.auth_type != "api_key" or not self.key:
            return {}
        value = {"bearer": f"Bearer {self.key}", "basic": f"Basic {self.key}"}.get(
            self.prefix, self.key
        )
        return {self.header or "Authorization": value}


@dataclass(frozen=True)
class ApiTool:
    """An operation of a provider, ready to call."""

    provider: str  # the provider's id
    server_url: str
    operation: ApiOperation
    auth: ApiAuth
    allow: AllowList

    def tool(self) -> Tool:
        return Tool(
            provider=self.provider,
            name=self.operation.name,
            label=self.operation.name,
            description=self.operation.description,
            invoke=self.call,
            built_in=False,
            parameters=tuple(
                ToolParameter(
                    p.name,
                    _parameter_type(p.type),
                    p.name,
                    p.description or p.name,
                    required=p.required,
                )
                for p in self.operation.parameters
            ),
        )

    def call(self, arguments: dict[str, Any]) -> str:
        operation = self.operation
        path = operation.path
        query: dict[str, str] = {}
        headers = {"Accept": "application/json, text/plain;q=0.9, */*;q=0.5"}
        cookies: list[str] = []
        body: dict[str, Any] = {}
        for parameter in operation.parameters:
            if parameter.name not in arguments:
                continue
            value = arguments[parameter.name]
            text = value if isinstance(value, str) else json.dumps(value)
            if parameter.location == "path":
                if text in (".", ".."):  # would climb out of the operation's path
                    raise ToolError(f"{parameter.name} may not be {text!r}")
                path = path.replace("{" + parameter.name + "}", quote(text, safe=""))
            elif parameter.location == "query":
                query[parameter.name] = text
            elif parameter.location == "header":
                if not _header_value(text):
                    raise ToolError(f"{parameter.name} must be printable ASCII (a header)")
                headers[parameter.name] = text
            elif parameter.location == "cookie":
                cookies.append(f"{parameter.name}={quote(text, safe='')}")
            else:
                body[parameter.name] = value
        if cookies:
            headers["Cookie"] = "; ".join(cookies)
        if self.auth.auth_type == "api_key" and not self.auth.key:
            raise ToolError(
                f"{operation.name}'s key could not be read: give it again on the Tools page."
            )
        headers.update(self.auth.headers())
        content = None
        if body or operation.method in ("post", "put", "patch"):
            headers["Content-Type"] = "application/json"
            content = json.dumps(body).encode()
        url = self.server_url + path + (f"?{urlencode(query)}" if query else "")
        if _origin(url) != _origin(self.server_url):  # the key goes to its server only
            raise ToolError(f"{operation.name} would leave {self.server_url}")
        try:
            answer = outbound.request(
                operation.method.upper(),
                url,
                self.allow,
                field=f"{operation.name}'s URL",
                headers=headers,
                content=content,
                timeout=TIMEOUT,
                max_bytes=MAX_ANSWER,
            )
        except outbound.AnswerTooLarge:
            raise ToolError(f"{operation.name} answered more than {MAX_ANSWER} bytes.") from None
        except UnicodeError:
            raise ToolError(f"{operation.name}'s request could not be encoded.") from None
        except httpx.TimeoutException:
            raise ToolError(f"{operation.name} did not answer within {TIMEOUT:g} s.") from None
        except httpx.HTTPError as error:
            # (its type only: a protocol error's text may quote the request's headers)
            raise ToolError(
                f"{operation.name} could not be reached ({type(error).__name__})."
            ) from None
        except ConduitError as error:  # the SSRF guard's refusal
            raise ToolError(f"{operation.name} may not be called: {error.message}") from None
        if not 200 <= answer.status_code < 300:
            raise ToolError(
                f"{operation.name} answered HTTP {answer.status_code}: {answer.text[:500]}"
            )
        return answer.text

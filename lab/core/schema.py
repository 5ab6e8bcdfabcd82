"""Every call an emulator serves, judged by Google's discovery document of its API.

``SchemaMiddleware`` sits between the lab's middleware (request log, faults) and an
emulator's routes. For each call it finds the discovery method by HTTP method and path,
then:

- refuses a call no method matches with 404, and one that breaks the method's contract
  with 400 in Google's words: an undeclared query parameter, a value of the wrong type or
  outside its enum, a missing required parameter, a JSON body field the method's
  ``request`` schema does not know (recursively). A refused call never reaches the
  emulator, so it changes nothing, and it is logged as no write;
- checks each JSON reply of a matched method against the method's ``response`` schema. A
  reply that breaks it is a lab bug: it is recorded in ``SchemaViolations`` (served at
  ``/_lab/schema_violations``), and the test harness fails on it. The client still gets
  the reply, so the failure names the schema, not some client's parse error.

A batch envelope is not judged: ``lab/core/batch.py`` sends each of its parts through the
whole app again, where each part is judged alone.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lab.core.discovery import (
    REQUEST,
    RESPONSE,
    Method,
    Problem,
    load_document,
    methods_of,
)
from lab.core.errors import ApiError

log = logging.getLogger(__name__)

# The discovery documents of each API the lab serves, by the lab's name for it. Cloud SQL
# is served at both prefixes: /v1 (the discovery client) and /sql/v1beta4 (gcloud).
DOCUMENTS: Mapping[str, tuple[str, ...]] = {
    "storage": ("storage.v1",),
    "dns": ("dns.v1",),
    "compute": ("compute.v1",),
    "sql": ("sqladmin.v1", "sqladmin.v1beta4"),
    "run": ("run.v2",),
    "secretmanager": ("secretmanager.v1",),
    "monitoring": ("monitoring.v3",),
    "resourcemanager": ("cloudresourcemanager.v3",),
}

# One-platform APIs answer errors without the legacy ``errors`` list
# (lab/secretmanager/exceptions.py says why).
_NO_ERRORS_LIST = frozenset({"secretmanager", "monitoring", "resourcemanager"})


@dataclass(frozen=True)
class Exemption:
    methods: frozenset[str]
    pattern: re.Pattern[str]
    reason: str


# What the lab serves under an API's own address that no discovery document lists, each
# with the reason it is served anyway. The lab's control routes (/_lab/...) live in an app
# of their own, which this middleware never wraps; the front door and the region apps are
# the product's own services, not Google APIs, and are never judged either.
EXEMPT: Mapping[str, tuple[Exemption, ...]] = {
    "storage": (
        Exemption(
            frozenset({"PUT", "DELETE"}),
            re.compile(r"^/(resumable/)?upload/storage/v1/b/[^/]+/o$"),
            "a resumable upload's session URI (the Location the initiating POST returns): "
            "its chunks are PUT there and a DELETE cancels it; the session URI is opaque, "
            "not a discovery method (cloud.google.com/storage/docs/performing-resumable-uploads)",
        ),
    ),
}

# System parameters every Google API accepts beside the discovery document's own common
# ``parameters``, under their ``$`` names (cloud.google.com/apis/docs/system-parameters).
# The gRPC-generated REST clients send ``$alt=json;enum-encoding=int``.
SYSTEM_PARAMETERS = frozenset(
    {
        "$alt",
        "$apiVersion",
        "$.xgafv",
        "$callback",
        "$ct",
        "$fields",
        "$key",
        "$prettyPrint",
        "$quotaUser",
        "$userProject",
        "$outputDefaults",
        "$unique",
        "$requestReason",
        "passwd",
        "password",
    }
)

_TRUE_FALSE = frozenset({"true", "false", "True", "False", "1", "0"})
_INTEGER = re.compile(r"^-?\d+$")
_REFUSED = "lab.schema_refused"


def refused_by_schema(scope: Scope) -> bool:
    """Whether the schema refused this call before any emulator saw it."""
    return bool(scope.get(_REFUSED))


class SchemaError(ApiError):
    """A call refused by the discovery document, in the API's own error shape."""

    def __init__(self, code: int, message: str, reason: str, errors_list: bool) -> None:
        super().__init__(message, reason=reason, code=code)
        self.errors_list = errors_list

    def to_json(self) -> dict[str, Any]:
        body = super().to_json()
        if not self.errors_list:
            del body["error"]["errors"]
        return body


# -- the record of what broke the schema ------------------------------------------------------


@dataclass(frozen=True)
class Violation:
    seq: int
    time: float
    # "response": the lab replied outside Google's schema (a lab bug, the tests fail);
    # "request": a caller's call was refused (the caller's bug, already a 400 to it).
    kind: str
    api: str
    method: str
    path: str
    discovery_method: str
    problems: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class SchemaViolations:
    """Every reply that broke Google's schema, and every call refused for breaking it.
    Kept across lab resets: the harness reads what arrived since the test began."""

    def __init__(self, limit: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._entries: list[Violation] = []
        self._seq = 0
        self._limit = limit

    def record(
        self, kind: str, api: str, method: str, path: str, discovery: str, problems: list[str]
    ) -> None:
        with self._lock:
            self._seq += 1
            entry = Violation(
                self._seq, time.time(), kind, api, method, path, discovery, tuple(problems)
            )
            self._entries.append(entry)
            del self._entries[: max(0, len(self._entries) - self._limit)]
        if kind == RESPONSE:
            log.error("lab reply breaks Google's schema: %s %s %s %s", api, method, path, problems)

    def entries(self, since: int = 0, kind: str | None = None) -> list[Violation]:
        with self._lock:
            return [e for e in self._entries if e.seq > since and kind in (None, e.kind)]

    @property
    def last_seq(self) -> int:
        with self._lock:
            return self._seq


# -- one API's methods ------------------------------------------------------------------------


@dataclass
class ApiSchema:
    """The methods of one API, by HTTP method, most specific template first."""

    api: str
    methods: dict[str, list[Method]]
    batch_paths: frozenset[str]
    exemptions: tuple[Exemption, ...] = ()
    errors_list: bool = True
    _by_shape: dict[tuple[str, int], list[Method]] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, api: str) -> ApiSchema:
        by_verb: dict[str, list[Method]] = {}
        batch: set[str] = set()
        for name in DOCUMENTS[api]:
            document = load_document(name)
            methods = methods_of(document)
            for method in methods:
                by_verb.setdefault(method.http_method, []).append(method)
            if methods:  # compile every schema now, not on some call's path
                methods[0].schemas.compile_all()
            if document.get("batchPath"):
                batch.add("/" + str(document["batchPath"]))
        for candidates in by_verb.values():
            candidates.sort(key=lambda m: m.literal_length, reverse=True)
        return cls(
            api,
            by_verb,
            frozenset(batch),
            EXEMPT.get(api, ()),
            api not in _NO_ERRORS_LIST,
        )

    def match(self, http_method: str, raw_path: str) -> Method | None:
        for method in self._candidates(http_method, raw_path.count("/")):
            if method.pattern.match(raw_path):
                return method
        return None

    def _candidates(self, http_method: str, slashes: int) -> list[Method]:
        """The methods a path with this many slashes could match, most specific first: those
        whose template has as many, and those with a ``{+var}`` that may hold any number.
        Compute has 1025 methods; a scan of them all cost 0.2 ms a call."""
        key = (http_method, slashes)
        found = self._by_shape.get(key)
        if found is None:
            found = [
                m
                for m in self.methods.get(http_method, ())
                if "{+" in m.template or m.template.count("/") == slashes
            ]
            self._by_shape[key] = found
        return found

    def exempt(self, http_method: str, path: str) -> bool:
        return any(e.pattern.match(path) and http_method in e.methods for e in self.exemptions)

    def error(self, code: int, message: str, reason: str) -> SchemaError:
        return SchemaError(code, message, reason, self.errors_list)

    def method_count(self) -> int:
        return len({m.id for ms in self.methods.values() for m in ms})


def query_problems(method: Method, query: str) -> list[Problem]:
    """What is wrong with a call's query string, by the method's declared parameters."""
    out: list[Problem] = []
    seen: set[str] = set()
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in SYSTEM_PARAMETERS:
            continue
        param = method.parameters.get(name)
        if param is None:
            out.append(
                Problem(
                    f'Invalid JSON payload received. Unknown name "{name}": Cannot bind query '
                    f"parameter. Field '{name}' could not be found in request message."
                )
            )
            continue
        if name in seen and not param.repeated:
            out.append(Problem(f"Invalid value at '{name}': the parameter is not repeated"))
        seen.add(name)
        node = param.node
        if node.enum is not None:
            # By name, or by number as the proto-generated REST clients send enums.
            ok = value in node.enum or bool(_INTEGER.match(value))
        elif node.type == "boolean":
            ok = value in _TRUE_FALSE
        elif node.type == "integer" or node.format in {"int64", "uint64"}:
            ok = bool(_INTEGER.match(value))
        elif node.type == "number":
            ok = _is_number(value)
        else:
            ok = True
        if not ok:
            out.append(Problem(f"Invalid value at '{name}' ({node.kind}), \"{value[:200]}\""))
        elif node.format == "google-fieldmask" and method.request is not None:
            out.extend(_mask_problems(method, name, value))
    for name, param in method.parameters.items():
        if param.required and name not in seen:
            out.append(Problem(f"Required parameter: {name}", reason="required"))
    return out


def _mask_problems(method: Method, name: str, value: str) -> list[Problem]:
    """An update mask must name fields of the method's request resource (AIP-161)."""
    assert method.request is not None
    return [
        Problem(f'Invalid {name}: "{path}" is not a field of {method.request}')
        for path in (p.strip() for p in value.split(","))
        if path and not method.schemas.has_path(method.request, path)
    ]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def body_problems(method: Method, raw: bytes) -> list[Problem]:
    """What is wrong with a JSON request body by the method's ``request`` schema. A body
    that is not JSON is left to the emulator, which answers its own parse error."""
    if not raw.strip():
        return []
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return []
    if method.request is None:
        if isinstance(body, dict):
            return [
                Problem(f'Invalid JSON payload received. Unknown name "{k}": Cannot find field.')
                for k in body
            ]
        return []
    return method.schemas.problems(method.request, body, REQUEST)


def response_problems(method: Method, raw: bytes) -> list[str]:
    """How a JSON reply breaks the method's ``response`` schema (empty: it does not)."""
    if not raw.strip():
        return []
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return [f"reply is not JSON: {exc}"]
    if method.response is None:
        return [] if body == {} else [f"{method.id} has no response body, the lab sent one"]
    return [p.message for p in method.schemas.problems(method.response, body, RESPONSE)]


# -- the middleware -----------------------------------------------------------------------------


def _is_json(content_type: str) -> bool:
    return content_type.split(";")[0].strip().lower() in {"application/json", ""}


def _header(scope_or_message: Mapping[str, Any], name: bytes) -> str:
    for key, value in scope_or_message.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return ""


_ROUTE_PARAM = re.compile(r"\{[^}]+\}")


def implemented_methods(schema: ApiSchema, routes: Sequence[BaseRoute]) -> frozenset[str]:
    """The discovery methods an emulator's routes are written for: each route's own path,
    its parameters filled with one segment, matched like a call. A route whose parameter
    takes slashes (``{object:path}``) would otherwise also swallow the calls of methods it
    was never written for (``b/{bucket}/o/{object}/acl/{entity}`` is
    objectAccessControls.get, not objects.get of ``x/acl/y``)."""
    found: set[str] = set()
    for route in routes:
        if not isinstance(route, Route) or route.methods is None:
            continue
        concrete = _ROUTE_PARAM.sub("x1", route.path)
        for verb in route.methods - {"HEAD"}:
            method = schema.match(verb, concrete)
            if method is not None:
                found.add(method.id)
    return frozenset(found)


class SchemaMiddleware:
    """Judges each call of one API by its discovery document (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        schema: ApiSchema,
        violations: SchemaViolations,
        routes: Sequence[BaseRoute] = (),
    ) -> None:
        """``routes`` are the emulator's: a call of a discovery method none of them is
        written for is 404, as a method the lab does not serve."""
        self.app = app
        self.schema = schema
        self.violations = violations
        self.implemented = implemented_methods(schema, routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        verb: str = scope["method"]
        path: str = scope["path"]
        raw_path = bytes(scope.get("raw_path") or path.encode()).decode("latin-1")
        raw_path = raw_path.split("?", 1)[0]
        query = bytes(scope.get("query_string", b"")).decode("latin-1")
        if (verb == "POST" and path in self.schema.batch_paths) or self.schema.exempt(verb, path):
            await self.app(scope, receive, send)
            return
        method = self.schema.match(verb, raw_path)
        if method is None or method.id not in self.implemented:
            message = f"The requested URL {path} was not found on this server ({verb})."
            if method is not None:
                message = f"{method.id} is not served by the lab: {verb} {path}"
            await self._refuse(scope, receive, send, method, 404, [Problem(message, "notFound")])
            return
        problems = query_problems(method, query)
        if problems:
            await self._refuse(scope, receive, send, method, 400, problems)
            return
        if not method.media_upload and _is_json(_header(scope, b"content-type")):
            body, receive = await _buffer(receive)
            problems = body_problems(method, body)
            if problems:
                await self._refuse(scope, receive, send, method, 400, problems)
                return
        media = method.media_download and "alt=media" in query
        await self.app(scope, receive, self._judging(send, scope, method) if not media else send)

    async def _refuse(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        method: Method | None,
        code: int,
        problems: list[Problem],
    ) -> None:
        scope[_REFUSED] = True
        messages = [p.message for p in problems]
        self.violations.record(
            REQUEST,
            self.schema.api,
            scope["method"],
            scope["path"],
            method.id if method else "",
            messages,
        )
        error = self.schema.error(code, "\n".join(messages), problems[0].reason)
        body = json.dumps(error.to_json()).encode()
        await send(
            {
                "type": "http.response.start",
                "status": code,
                "headers": [
                    (b"content-type", b"application/json; charset=UTF-8"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _judging(self, send: Send, scope: Scope, method: Method) -> Send:
        """A ``send`` that holds a 2xx JSON reply until it is whole, then judges it."""
        start: Message | None = None
        chunks: list[bytes] = []

        async def judged(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                status = int(message["status"])
                if 200 <= status < 300 and _is_json(_header(message, b"content-type")):
                    start = message
                    return
                await send(message)
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(bytes(message.get("body", b"")))
            if message.get("more_body"):
                return
            body = b"".join(chunks)
            problems = response_problems(method, body)
            if problems:
                self.violations.record(
                    RESPONSE, self.schema.api, scope["method"], scope["path"], method.id, problems
                )
            await send(start)
            await send({"type": "http.response.body", "body": body})

        return judged


async def _buffer(receive: Receive) -> tuple[bytes, Receive]:
    """The whole request body, and a ``receive`` that hands it to the app again."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(bytes(message.get("body", b"")))
        if not message.get("more_body"):
            break
    body = b"".join(chunks)
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return body, replay


_SCHEMAS: dict[str, ApiSchema] = {}
_LOCK = threading.Lock()


def schema_for(api: str) -> ApiSchema | None:
    """The compiled schema of one of the lab's APIs (None for what is not a Google API)."""
    if api not in DOCUMENTS:
        return None
    with _LOCK:
        if api not in _SCHEMAS:
            _SCHEMAS[api] = ApiSchema.load(api)
        return _SCHEMAS[api]

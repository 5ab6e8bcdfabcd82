"""Google's discovery documents, compiled into a call matcher and JSON validators.

google-api-python-client ships the discovery document of every Google API as data
(``googleapiclient/discovery_cache/documents``). They are Google's own description of each
REST surface: its paths, query parameters and the JSON schemas of bodies and replies, so
the lab reads them instead of keeping a description of its own.

The validators are a small walker over the discovery schema language (``type``,
``format``, ``enum``, ``properties``, ``additionalProperties``, ``items``, ``$ref``),
built once per schema and cached: a call costs a dictionary walk, no JSON Schema engine.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class DiscoveryUnavailable(RuntimeError):
    """Google's discovery documents cannot be read: the lab refuses to start without them."""


def documents_dir() -> Path:
    """Where google-api-python-client keeps its discovery documents, found without importing it."""
    spec = importlib.util.find_spec("googleapiclient")
    if spec is None or not spec.submodule_search_locations:
        raise DiscoveryUnavailable(
            "google-api-python-client is not installed: the lab validates every call against "
            "the discovery documents it ships, and will not run without them"
        )
    for location in spec.submodule_search_locations:
        folder = Path(location) / "discovery_cache" / "documents"
        if folder.is_dir():
            return folder
    raise DiscoveryUnavailable(f"no discovery_cache/documents under {spec.origin}")


def load_document(name: str) -> dict[str, Any]:
    path = documents_dir() / f"{name}.json"
    if not path.is_file():
        raise DiscoveryUnavailable(f"discovery document {name} is missing ({path})")
    document: dict[str, Any] = json.loads(path.read_text())
    return document


# -- problems -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One way a JSON value breaks its schema, worded as Google's ESF words it."""

    message: str
    reason: str = "invalid"


_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def proto_path(parts: Sequence[str | int]) -> str:
    """``('template', 'containers', 0, 'ports')`` as Google names it in an error:
    ``template.containers[0].ports`` (proto field names, snake_case)."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = _CAMEL.sub("_", part).lower()
            out += f".{name}" if out else name
    return out


def _unknown(name: str, at: Sequence[str | int]) -> Problem:
    where = f" at '{proto_path(at)}'" if at else ""
    return Problem(
        f'Invalid JSON payload received. Unknown name "{name}"{where}: Cannot find field.'
    )


def _invalid(at: Sequence[str | int], kind: str, value: object) -> Problem:
    shown = json.dumps(value) if not isinstance(value, str) else f'"{value}"'
    return Problem(f"Invalid value at '{proto_path(at)}' ({kind}), {shown[:200]}")


# -- schema nodes ---------------------------------------------------------------------------

# In a request, proto3's JSON parser accepts a number or a numeric string for any integer,
# an enum's name or its number, and null for any field (as unset). Google's replies are
# stricter: 64-bit integers are strings, 32-bit ones numbers, enums names, nothing null.
REQUEST = "request"
RESPONSE = "response"
_INT = re.compile(r"^-?\d+$")
_KINDS = {
    ("integer", "int32"): "TYPE_INT32",
    ("integer", "uint32"): "TYPE_UINT32",
    ("string", "int64"): "TYPE_INT64",
    ("string", "uint64"): "TYPE_UINT64",
    ("number", "double"): "TYPE_DOUBLE",
    ("number", "float"): "TYPE_FLOAT",
    ("boolean", ""): "TYPE_BOOL",
}


class Node:
    def check(self, value: object, at: list[str | int], mode: str, out: list[Problem]) -> None:
        raise NotImplementedError


class AnyNode(Node):
    def check(self, value: object, at: list[str | int], mode: str, out: list[Problem]) -> None:
        return


@dataclass
class ScalarNode(Node):
    type: str
    format: str | None = None
    enum: frozenset[str] | None = None

    def __post_init__(self) -> None:
        self.plain_string = (
            self.type == "string" and self.enum is None and self.format not in {"int64", "uint64"}
        )

    @property
    def kind(self) -> str:
        if self.enum is not None:
            return "TYPE_ENUM"
        return _KINDS.get((self.type, self.format or ""), f"TYPE_{self.type.upper()}")

    def check(self, value: object, at: list[str | int], mode: str, out: list[Problem]) -> None:
        if self.plain_string and value.__class__ is str:
            return  # the common case, first
        if value is None:
            if mode == RESPONSE:
                out.append(_invalid(at, self.kind, value))
            return
        if not self.accepts(value, mode):
            out.append(_invalid(at, self.kind, value))

    def accepts(self, value: object, mode: str) -> bool:
        integer = isinstance(value, int) and not isinstance(value, bool)
        if self.enum is not None:
            if isinstance(value, str):
                return value in self.enum
            return mode == REQUEST and integer
        if self.type == "boolean":
            return isinstance(value, bool)
        if self.type == "integer":
            if mode == REQUEST and isinstance(value, str):
                return bool(_INT.match(value))
            return integer
        if self.type == "number":
            if isinstance(value, str):  # proto3 JSON writes NaN and Infinity as strings
                return value in {"NaN", "Infinity", "-Infinity"} or mode == REQUEST
            return (integer or isinstance(value, float)) and not isinstance(value, bool)
        if self.type == "string":
            if self.format in {"int64", "uint64"}:
                if mode == REQUEST and integer:
                    return True
                return isinstance(value, str) and bool(_INT.match(value))
            return isinstance(value, str)
        return True


@dataclass
class ArrayNode(Node):
    items: Node

    def check(self, value: object, at: list[str | int], mode: str, out: list[Problem]) -> None:
        if value is None and mode == REQUEST:
            return
        if not isinstance(value, list):
            out.append(_invalid(at, "TYPE_LIST", value))
            return
        items = self.items
        plain = isinstance(items, ScalarNode) and items.plain_string
        if plain and all(item.__class__ is str for item in value):
            return
        for index, item in enumerate(value):
            at.append(index)
            items.check(item, at, mode, out)
            at.pop()


@dataclass
class ObjectNode(Node):
    properties: dict[str, Node] = field(default_factory=dict)
    additional: Node | None = None
    # An object with neither ``properties`` nor ``additionalProperties`` (``"type":
    # "object"`` alone) is free-form JSON: a ``google.protobuf.Struct``.
    free: bool = False

    def __post_init__(self) -> None:
        # Most fields are plain strings: checked here, without a call per field.
        self.strings = frozenset(
            k for k, n in self.properties.items() if isinstance(n, ScalarNode) and n.plain_string
        )

    def check(self, value: object, at: list[str | int], mode: str, out: list[Problem]) -> None:
        if value is None and mode == REQUEST:
            return
        if not isinstance(value, dict):
            out.append(_invalid(at, "TYPE_MESSAGE", value))
            return
        if self.free:
            return
        properties = self.properties
        strings = self.strings
        for key, item in value.items():
            if item.__class__ is str and key in strings:
                continue
            node = properties.get(key)
            if node is None:
                node = self.additional
                if node is None:
                    out.append(_unknown(key, at))
                    continue
            at.append(key)
            node.check(item, at, mode, out)
            at.pop()


@dataclass
class RefNode(Node):
    """A ``$ref``, resolved when first checked (schemas refer to themselves)."""

    name: str
    schemas: Schemas
    _target: Node | None = None

    def check(self, value: object, at: list[str | int], mode: str, out: list[Problem]) -> None:
        target = self._target
        if target is None:
            target = self._target = self.schemas.node(self.name)
        target.check(value, at, mode, out)


class Schemas:
    """A discovery document's ``schemas``, each compiled into a Node on first use."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self._raw = raw
        self._nodes: dict[str, Node] = {}

    def __contains__(self, name: object) -> bool:
        return name in self._raw

    def node(self, name: str) -> Node:
        node = self._nodes.get(name)
        if node is None:
            if name not in self._raw:
                raise KeyError(f"no schema {name!r}")
            node = self.compile(self._raw[name])
            self._nodes[name] = node
        return node

    def compile(self, spec: Mapping[str, Any]) -> Node:
        if "$ref" in spec:
            return RefNode(str(spec["$ref"]), self)
        kind = spec.get("type")
        if kind == "object" or "properties" in spec:
            props = {k: self.compile(v) for k, v in spec.get("properties", {}).items()}
            extra = spec.get("additionalProperties")
            additional = self.compile(extra) if isinstance(extra, dict) else None
            return ObjectNode(props, additional, free=not props and additional is None)
        if kind == "array":
            return ArrayNode(self.compile(spec.get("items", {})))
        if kind in {"string", "integer", "number", "boolean"}:
            enum = spec.get("enum")
            return ScalarNode(kind, spec.get("format"), frozenset(enum) if enum else None)
        return AnyNode()

    def problems(self, name: str, value: object, mode: str, limit: int = 20) -> list[Problem]:
        out: list[Problem] = []
        self.node(name).check(value, [], mode, out)
        return out[:limit]

    def has_path(self, name: str, dotted: str) -> bool:
        """Whether a field mask path (``scaling.min_instance_count`` or its camelCase) names
        a field of schema ``name``: through messages and map values, never past a list."""
        if dotted == "*":
            return True
        node: Node = self.node(name)
        for segment in dotted.split("."):
            while isinstance(node, RefNode):
                node = self.node(node.name)
            if not isinstance(node, ObjectNode):
                return False
            if node.free:
                return True
            camel = re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), segment)
            found = node.properties.get(camel) or node.properties.get(segment)
            if found is None:
                if node.additional is None:
                    return False
                found = node.additional
            node = found
        return True

    def compile_all(self) -> None:
        """Compile every schema now (each ``$ref`` still resolves lazily, but is cached)."""
        for name in self._raw:
            self.node(name)


# -- methods -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Parameter:
    name: str
    node: ScalarNode
    repeated: bool = False
    required: bool = False


@dataclass(frozen=True)
class Method:
    id: str
    http_method: str
    template: str
    pattern: re.Pattern[str]
    parameters: Mapping[str, Parameter]
    request: str | None
    response: str | None
    schemas: Schemas = field(repr=False, compare=False)
    media_upload: bool = False
    media_download: bool = False

    @property
    def literal_length(self) -> int:
        """How much of the template is fixed text: the more, the more specific."""
        return len(re.sub(r"\{[^}]*\}", "", self.template))


_VARIABLE = re.compile(r"\{(\+?)([^}]+)\}")


def template_pattern(template: str) -> re.Pattern[str]:
    """A regex for a discovery path template: ``{x}`` is one segment, ``{+x}`` (reserved
    expansion) may hold slashes. Matched against the raw (still %-encoded) path, so a Cloud
    Storage object name's ``%2F`` stays inside its segment."""
    out = ""
    last = 0
    for match in _VARIABLE.finditer(template):
        out += re.escape(template[last : match.start()])
        out += ".+" if match.group(1) else "[^/]+"
        last = match.end()
    out += re.escape(template[last:])
    return re.compile(f"^{out}$")


def _parameter(name: str, spec: Mapping[str, Any]) -> Parameter:
    enum = spec.get("enum")
    node = ScalarNode(
        str(spec.get("type", "string")), spec.get("format"), frozenset(enum) if enum else None
    )
    return Parameter(name, node, bool(spec.get("repeated")), bool(spec.get("required")))


def _walk(resource: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    yield from resource.get("methods", {}).values()
    for child in resource.get("resources", {}).values():
        yield from _walk(child)


def methods_of(document: Mapping[str, Any]) -> list[Method]:
    """Every method of a discovery document, with one entry per path it is served at: its
    ``flatPath`` (or ``path``) under the ``servicePath``, its media upload paths, and the
    ``/download`` service for methods that use it."""
    schemas = Schemas(document.get("schemas", {}))
    common = {n: _parameter(n, s) for n, s in document.get("parameters", {}).items()}
    service = "/" + str(document.get("servicePath", ""))
    out: list[Method] = []
    for spec in _walk(document):
        params = dict(common)
        params.update(
            {
                n: _parameter(n, s)
                for n, s in spec.get("parameters", {}).items()
                if s.get("location") == "query"
            }
        )
        request = spec.get("request", {}).get("$ref")
        response = spec.get("response", {}).get("$ref")
        relative = str(spec.get("flatPath") or spec["path"])
        templates = [(service + relative, False)]
        protocols = spec.get("mediaUpload", {}).get("protocols", {})
        templates += [(str(p["path"]), True) for p in protocols.values() if "path" in p]
        if spec.get("useMediaDownloadService"):
            templates.append(("/download" + service + relative, False))
        for template, upload in templates:
            out.append(
                Method(
                    id=str(spec["id"]),
                    http_method=str(spec["httpMethod"]),
                    template=template,
                    pattern=template_pattern(template),
                    parameters=params,
                    request=request,
                    response=response,
                    schemas=schemas,
                    media_upload=upload,
                    media_download=bool(spec.get("supportsMediaDownload")),
                )
            )
    return out

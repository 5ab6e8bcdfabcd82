"""Validate emulator responses against Google's own discovery documents.

google-api-python-client ships the discovery JSON of every API. Its ``schemas`` become
JSON Schema here, with ``additionalProperties: false`` so an invented field fails.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import googleapiclient
import jsonschema

_DOCS = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents"


def _convert(node: Any) -> Any:
    if isinstance(node, list):
        return [_convert(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    if "$ref" in node:
        return {"$ref": f"#/$defs/{node['$ref']}"}
    kind = node.get("type")
    fmt = node.get("format")
    if kind == "string" and fmt in {"int64", "uint64"}:
        return {"anyOf": [{"type": "string", "pattern": r"^-?\d+$"}, {"type": "integer"}]}
    if kind == "any":
        return {}
    for key, value in node.items():
        if key in {
            "id",
            "description",
            "annotations",
            "enumDescriptions",
            "readOnly",
            "deprecated",
            "format",
            "default",
            "location",
            "required",
        }:
            continue
        if key == "properties":
            out["properties"] = {k: _convert(v) for k, v in value.items()}
        elif key == "additionalProperties":
            out["additionalProperties"] = _convert(value)
        elif key == "items":
            out["items"] = _convert(value)
        else:
            out[key] = value
    if kind == "object" and "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    if kind == "string" and "enum" in out:
        out.pop("type")  # accept enum names; integers never appear in replies we send
    return out


@functools.cache
def schema_for(api: str) -> dict[str, Any]:
    """All schemas of one discovery document (e.g. ``dns.v1``) as JSON Schema ``$defs``."""
    doc = json.loads((_DOCS / f"{api}.json").read_text())
    return {k: _convert(v) for k, v in doc["schemas"].items()}


@functools.cache
def _validator(api: str, schema: str) -> jsonschema.Draft202012Validator:
    # Build each validator once and skip the metaschema check: that check is the slow
    # part (seconds for compute.v1), and Google's discovery documents are trusted input.
    defs = schema_for(api)
    if schema not in defs:
        raise KeyError(f"{api} has no schema {schema!r}")
    document = {"$defs": defs, "$ref": f"#/$defs/{schema}"}
    return jsonschema.Draft202012Validator(document)


def assert_valid(api: str, schema: str, body: Any) -> None:
    """Fail the test if ``body`` is not a valid ``schema`` of discovery document ``api``."""
    error = jsonschema.exceptions.best_match(_validator(api, schema).iter_errors(body))
    if error is not None:
        raise error

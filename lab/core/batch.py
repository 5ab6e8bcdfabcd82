"""Google's HTTP batch endpoint (``POST /batch/<api>/<version>``), for any emulated API.

A batch request is one ``multipart/mixed`` request whose parts are each an
``application/http`` request: a request line with the path only, headers, a blank line
and a body. The server unwraps it into separate calls, and answers ``multipart/mixed``
with one ``application/http`` response per part, whose ``Content-ID`` is the request's
prefixed with ``response-`` (cloud.google.com/compute/docs/api/how-tos/batch). gcloud's
apitools client sends every compute call this way.

Each part is dispatched to the API's own ASGI app, the lab's middleware included, so a
part is logged, throttled and faulted exactly as the same call sent alone; a part that
fails gets its error in its own part, and the batch itself still answers 200.
"""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import json
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import unquote, urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Scope

from lab.core.errors import ApiError, BadRequest
from lab.core.http import reads

# "You're limited to 1000 calls in a single batch request" (compute/docs/api/how-tos/batch).
MAX_CALLS = 1000
# Batches carry JSON calls; refuse a body far bigger than 1000 of them could need.
MAX_BODY = 64 << 20
_PHRASES = {status.value: status.phrase for status in HTTPStatus}


@dataclass(frozen=True)
class InnerRequest:
    content_id: str | None
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True)
class InnerResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class BatchEndpoint:
    """The handler of ``POST <batch path>``; ``target`` is the API's whole app, set once
    it is built (the batch route is one of its own routes)."""

    def __init__(self, service_path: str) -> None:
        """``service_path`` is the API's path prefix, e.g. ``/compute/v1/``: inner calls
        must stay inside it ("All the inner requests must go to the same Google API")."""
        self.service_path = service_path
        self.target: ASGIApp | None = None

    @reads
    async def handle(self, request: Request) -> Response:
        assert self.target is not None, "BatchEndpoint.target was never set"
        body = await request.body()
        if len(body) > MAX_BODY:
            raise BadRequest(f"Batch request body exceeds {MAX_BODY} bytes")
        inner = parse_batch(request.headers.get("content-type", ""), body)
        replies = []
        for call in inner:
            replies.append((call.content_id, await self._dispatch(request.scope, call)))
        boundary = f"batch_{uuid.uuid4().hex}"
        return Response(
            encode_replies(replies, boundary),
            status_code=200,
            media_type=f"multipart/mixed; boundary={boundary}",
        )

    async def _dispatch(self, outer: Scope, call: InnerRequest) -> InnerResponse:
        refusal = self._refusal(call)
        if refusal is not None:
            return error_reply(refusal)
        split = urlsplit(call.target)
        headers = [
            (k.lower().encode("latin-1"), v.encode("latin-1"))
            for k, v in call.headers
            if k.lower() != "content-length"
        ]
        headers.append((b"content-length", str(len(call.body)).encode()))
        scope: Scope = {
            **{k: outer[k] for k in ("type", "asgi", "scheme", "server", "client") if k in outer},
            "http_version": "1.1",
            "method": call.method,
            "path": unquote(split.path),
            "raw_path": split.path.encode(),
            "query_string": split.query.encode(),
            "root_path": "",
            "headers": headers,
        }
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": call.body, "more_body": False}

        status = 500
        reply_headers: list[tuple[str, str]] = []
        chunks: list[bytes] = []

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                reply_headers.extend(
                    (k.decode("latin-1"), v.decode("latin-1")) for k, v in message["headers"]
                )
            elif message["type"] == "http.response.body":
                chunks.append(bytes(message.get("body", b"")))

        assert self.target is not None
        await self.target(scope, receive, send)
        return InnerResponse(status, reply_headers, b"".join(chunks))

    def _refusal(self, call: InnerRequest) -> ApiError | None:
        if "://" in call.target:
            return BadRequest("Batch parts must carry the path of the URL only, not a full URL")
        path = urlsplit(call.target).path
        if path.startswith("/batch/"):
            return BadRequest("A batch request cannot contain another batch request")
        if not path.startswith(self.service_path):
            return BadRequest(
                f"All inner requests of a batch must go to the same API ({self.service_path})"
            )
        return None


def parse_batch(content_type: str, body: bytes) -> list[InnerRequest]:
    """The inner requests of a batch body; 400 for anything that is not a batch."""
    if not content_type.lower().startswith("multipart/mixed") or "boundary=" not in content_type:
        raise BadRequest("A batch request must be multipart/mixed with a boundary")
    envelope = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1") + body
    message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(envelope)
    parts = message.get_payload()
    if not message.is_multipart() or not isinstance(parts, list) or not parts:
        raise BadRequest("The batch request has no parts")
    if len(parts) > MAX_CALLS:
        raise BadRequest(f"A batch request may hold at most {MAX_CALLS} calls, not {len(parts)}")
    calls = []
    for part in parts:
        if not isinstance(part, email.message.Message):
            raise BadRequest("Malformed batch part")
        if part.get_content_type() != "application/http":
            raise BadRequest(f"Batch parts must be application/http, not {part.get_content_type()}")
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            raise BadRequest("A batch part is empty")
        calls.append(_parse_inner(part.get("Content-ID"), payload))
    return calls


def _parse_inner(content_id: str | None, payload: bytes) -> InnerRequest:
    line, _, rest = payload.lstrip(b"\r\n").partition(b"\n")
    words = line.decode("latin-1").strip().split(" ")
    if len(words) < 2 or not words[0].isalpha():
        raise BadRequest(f"Malformed request line in a batch part: {line[:200]!r}")
    inner = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(rest)
    body = inner.get_payload(decode=True)
    return InnerRequest(
        content_id,
        words[0].upper(),
        words[1],
        [(k, str(v)) for k, v in inner.items()],
        body if isinstance(body, bytes) else b"",
    )


def error_reply(error: ApiError) -> InnerResponse:
    body = json.dumps(error.to_json()).encode()
    return InnerResponse(error.code, [("content-type", "application/json; charset=UTF-8")], body)


def encode_replies(replies: list[tuple[str | None, InnerResponse]], boundary: str) -> bytes:
    out = bytearray()
    for content_id, reply in replies:
        out += f"--{boundary}\r\nContent-Type: application/http\r\n".encode()
        if content_id:
            out += f"Content-ID: {_response_id(content_id)}\r\n".encode("latin-1")
        out += b"\r\n"
        phrase = _PHRASES.get(reply.status, "")
        out += f"HTTP/1.1 {reply.status} {phrase}\r\n".encode()
        for key, value in reply.headers:
            if key.lower() != "content-length":
                out += f"{key}: {value}\r\n".encode("latin-1")
        out += f"Content-Length: {len(reply.body)}\r\n\r\n".encode()
        out += reply.body + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out)


def _response_id(content_id: str) -> str:
    """``<abc+1>`` answers as ``<response-abc+1>``, as Google's batch replies do."""
    inner = content_id.strip()
    if inner.startswith("<") and inner.endswith(">"):
        inner = inner[1:-1]
    return f"<response-{inner}>"

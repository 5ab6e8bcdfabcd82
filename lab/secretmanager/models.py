"""Secret Manager state: secrets, their versions and the ``latest`` alias.

What the lab keeps as Secret Manager documents it (cloud.google.com/secret-manager/docs):

- Names in replies carry the project *number* (``projects/123.../secrets/s``), as Google's
  do; requests may name the project by id or number.
- A secret's replication policy is set at creation and never changes: ``automatic``, or
  ``userManaged`` with one or more replica locations. Each version reports it.
- Versions are numbered from 1 in creation order. ``latest`` is an alias of the most
  recently created version, whatever its state: if that one is disabled or destroyed,
  accessing ``latest`` fails (FAILED_PRECONDITION); it never falls back to an older one.
- Only an ENABLED version can be accessed. DESTROYED is final: the payload is gone and
  the version can be neither enabled nor disabled again.
- Lists page with ``pageSize``/``pageToken``; versions are listed newest first.
- Lab rule: with ``userManaged`` replication, a secret whose every replica location is in
  a lab outage cannot be accessed or written (503 UNAVAILABLE); one surviving replica is
  enough. ``automatic`` secrets are Google-managed multi-region and stay available.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import google_crc32c

from lab.core.context import LabContext
from lab.secretmanager.exceptions import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    ReplicasUnavailable,
    SecretNotFound,
)

SECRET_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
LOCATION = re.compile(r"^[a-z]+(-[a-z]+)+[0-9]+$")
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_PAGE_SIZE = 25000
LATEST = "latest"
# Secret fields a client may set that the lab keeps; output-only ones are ignored.
SETTABLE = frozenset({"replication", "labels", "annotations"})
OUTPUT_ONLY = frozenset({"name", "createTime", "etag"})


def rfc3339_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_etag() -> str:
    # Secret Manager's etags are quoted strings, as HTTP entity tags are.
    return f'"{uuid.uuid4().hex[:14]}"'


def project_number(project: str) -> str:
    """The project's number: a fixed 12-digit number per project id (or the number itself)."""
    if project.isdigit():
        return project
    digest = int(hashlib.sha256(project.encode()).hexdigest(), 16)
    return str(100_000_000_000 + digest % 900_000_000_000)


def crc32c(data: bytes) -> int:
    return int(google_crc32c.value(data))


@dataclass
class Replication:
    """``None`` locations means automatic replication."""

    locations: tuple[str, ...] | None

    @classmethod
    def from_json(cls, body: object) -> Replication:
        if not isinstance(body, dict) or not body:
            raise InvalidArgument("Secret.replication is required.")
        automatic, user = body.get("automatic"), body.get("userManaged")
        if (automatic is None) == (user is None):
            raise InvalidArgument(
                "Secret.replication must set exactly one of 'automatic' or 'userManaged'."
            )
        if automatic is not None:
            return cls(None)
        replicas = user.get("replicas") if isinstance(user, dict) else None
        if not isinstance(replicas, list) or not replicas:
            raise InvalidArgument("Secret.replication.userManaged.replicas must not be empty.")
        locations = []
        for i, replica in enumerate(replicas):
            location = replica.get("location") if isinstance(replica, dict) else None
            if not isinstance(location, str) or not LOCATION.match(location):
                raise InvalidArgument(
                    f"Secret.replication.userManaged.replicas[{i}].location is invalid: "
                    f"{location!r}"
                )
            if location in locations:
                raise InvalidArgument(f"Replica location {location} is listed more than once.")
            locations.append(location)
        return cls(tuple(locations))

    def policy_json(self) -> dict[str, Any]:
        if self.locations is None:
            return {"automatic": {}}
        return {"userManaged": {"replicas": [{"location": loc} for loc in self.locations]}}

    def status_json(self) -> dict[str, Any]:
        # ReplicationStatus mirrors the policy: same keys, one status per replica.
        return self.policy_json()


@dataclass
class Version:
    number: int
    data: bytes | None
    client_checksum: bool
    state: str = "ENABLED"
    create_time: str = field(default_factory=rfc3339_now)
    destroy_time: str | None = None
    etag: str = field(default_factory=new_etag)

    def to_json(self, secret_name: str, replication: Replication) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": f"{secret_name}/versions/{self.number}",
            "createTime": self.create_time,
            "state": self.state,
            "replicationStatus": replication.status_json(),
            "etag": self.etag,
            "clientSpecifiedPayloadChecksum": self.client_checksum,
        }
        if self.destroy_time:
            body["destroyTime"] = self.destroy_time
        return body


@dataclass
class Secret:
    project_number: str
    secret_id: str
    replication: Replication
    labels: dict[str, str]
    annotations: dict[str, str]
    create_time: str = field(default_factory=rfc3339_now)
    etag: str = field(default_factory=new_etag)
    versions: list[Version] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"projects/{self.project_number}/secrets/{self.secret_id}"

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.name,
            "replication": self.replication.policy_json(),
            "createTime": self.create_time,
            "etag": self.etag,
        }
        if self.labels:
            body["labels"] = dict(self.labels)
        if self.annotations:
            body["annotations"] = dict(self.annotations)
        return body

    def version(self, version_id: str) -> Version:
        if version_id == LATEST:
            if not self.versions:
                raise SecretNotFound(f"Secret [{self.name}] not found or has no versions.")
            return self.versions[-1]
        if not version_id.isdigit() or int(version_id) < 1:
            raise InvalidArgument(f"Invalid secret version id: {version_id!r}.")
        number = int(version_id)
        if number > len(self.versions):
            raise SecretNotFound(f"Secret Version [{self.name}/versions/{number}] not found.")
        return self.versions[number - 1]


def _page(items: list[Any], page_size: int, page_token: str, cap: int) -> tuple[list[Any], str]:
    """One page and the next token (empty at the end); tokens are opaque to clients."""
    if page_size < 0:
        raise InvalidArgument(f"page_size must not be negative: {page_size}.")
    size = min(MAX_PAGE_SIZE if page_size == 0 else page_size, MAX_PAGE_SIZE, cap)
    start = 0
    if page_token:
        try:
            start = int(base64.urlsafe_b64decode(page_token.encode()).decode())
        except (ValueError, binascii.Error):
            raise InvalidArgument(f"Invalid page token: {page_token!r}.") from None
    end = start + size
    token = base64.urlsafe_b64encode(str(end).encode()).decode() if end < len(items) else ""
    return items[start:end], token


def _string_map(body: dict[str, Any], key: str) -> dict[str, str]:
    value = body.get(key) or {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidArgument(f"Secret.{key} must map strings to strings.")
    return dict(value)


class SecretManagerBackend:
    """Every secret of every project; request handlers and the region apps share it."""

    def __init__(self, ctx: LabContext) -> None:
        self._ctx = ctx
        self._page_cap = ctx.settings.page_cap
        self._lock = threading.Lock()
        self._secrets: dict[tuple[str, str], Secret] = {}

    def reset(self) -> None:
        with self._lock:
            self._secrets.clear()

    # secrets ------------------------------------------------------------------------------

    def create_secret(self, project: str, secret_id: str, body: dict[str, Any]) -> dict[str, Any]:
        if not SECRET_ID.match(secret_id or ""):
            raise InvalidArgument(
                f"Invalid secret id {secret_id!r}: 1-255 letters, digits, '_' or '-'."
            )
        unknown = sorted(set(body) - SETTABLE - OUTPUT_ONLY)
        if unknown:
            raise InvalidArgument(f"The lab does not support Secret fields {unknown}.")
        replication = Replication.from_json(body.get("replication"))
        labels, annotations = _string_map(body, "labels"), _string_map(body, "annotations")
        number = project_number(project)
        with self._lock:
            if (number, secret_id) in self._secrets:
                name = f"projects/{number}/secrets/{secret_id}"
                raise AlreadyExists(f"Secret [{name}] already exists.")
            secret = Secret(number, secret_id, replication, labels, annotations)
            self._secrets[(number, secret_id)] = secret
            return secret.to_json()

    def get_secret(self, project: str, secret_id: str) -> dict[str, Any]:
        with self._lock:
            return self._secret(project, secret_id).to_json()

    def list_secrets(self, project: str, page_size: int, page_token: str) -> dict[str, Any]:
        number = project_number(project)
        with self._lock:
            mine = [s for (p, _), s in self._secrets.items() if p == number]
            page, token = _page(mine, page_size, page_token, self._page_cap)
            reply: dict[str, Any] = {
                "secrets": [s.to_json() for s in page],
                "totalSize": len(mine),
            }
        if token:
            reply["nextPageToken"] = token
        return reply

    def delete_secret(self, project: str, secret_id: str, etag: str | None) -> dict[str, Any]:
        with self._lock:
            secret = self._secret(project, secret_id)
            if etag and etag != secret.etag:
                raise FailedPrecondition(f"The etag does not match the secret [{secret.name}].")
            del self._secrets[(secret.project_number, secret.secret_id)]
        return {}

    # versions -----------------------------------------------------------------------------

    def add_version(self, project: str, secret_id: str, body: dict[str, Any]) -> dict[str, Any]:
        payload = body.get("payload")
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), str):
            raise InvalidArgument("AddSecretVersionRequest.payload.data is required.")
        try:
            data = base64.b64decode(payload["data"], validate=True)
        except binascii.Error:
            raise InvalidArgument("payload.data is not valid base64.") from None
        if len(data) > MAX_PAYLOAD_BYTES:
            raise InvalidArgument(
                f"Secret payload is {len(data)} bytes; the limit is {MAX_PAYLOAD_BYTES}."
            )
        sent_crc = payload.get("dataCrc32c")
        if sent_crc is not None and int(sent_crc) != crc32c(data):
            raise InvalidArgument("Checksum mismatch: payload.dataCrc32c does not match the data.")
        with self._lock:
            secret = self._secret(project, secret_id)
            self._reachable(secret)
            version = Version(len(secret.versions) + 1, data, sent_crc is not None)
            secret.versions.append(version)
            return version.to_json(secret.name, secret.replication)

    def get_version(self, project: str, secret_id: str, version_id: str) -> dict[str, Any]:
        with self._lock:
            secret = self._secret(project, secret_id)
            return secret.version(version_id).to_json(secret.name, secret.replication)

    def list_versions(
        self, project: str, secret_id: str, page_size: int, page_token: str
    ) -> dict[str, Any]:
        with self._lock:
            secret = self._secret(project, secret_id)
            newest_first = list(reversed(secret.versions))
            page, token = _page(newest_first, page_size, page_token, self._page_cap)
            reply: dict[str, Any] = {
                "versions": [v.to_json(secret.name, secret.replication) for v in page],
                "totalSize": len(newest_first),
            }
        if token:
            reply["nextPageToken"] = token
        return reply

    def access_version(self, project: str, secret_id: str, version_id: str) -> dict[str, Any]:
        with self._lock:
            secret = self._secret(project, secret_id)
            self._reachable(secret)
            version = secret.version(version_id)
            name = f"{secret.name}/versions/{version.number}"
            if version.state != "ENABLED" or version.data is None:
                raise FailedPrecondition(f"Secret Version [{name}] is in {version.state} state.")
            data = version.data
        return {
            "name": name,
            "payload": {
                "data": base64.b64encode(data).decode(),
                "dataCrc32c": str(crc32c(data)),
            },
        }

    def change_state(
        self, project: str, secret_id: str, version_id: str, action: str, etag: str | None
    ) -> dict[str, Any]:
        """``enable``, ``disable`` or ``destroy`` one version; DESTROYED is final."""
        with self._lock:
            secret = self._secret(project, secret_id)
            version = secret.version(version_id)
            name = f"{secret.name}/versions/{version.number}"
            if etag and etag != version.etag:
                raise FailedPrecondition(f"The etag does not match Secret Version [{name}].")
            if version.state == "DESTROYED":
                raise FailedPrecondition(f"Secret Version [{name}] is in DESTROYED state.")
            target = {"enable": "ENABLED", "disable": "DISABLED", "destroy": "DESTROYED"}[action]
            if version.state != target:
                version.state = target
                version.etag = new_etag()
                if target == "DESTROYED":
                    version.data = None
                    version.destroy_time = rfc3339_now()
            return version.to_json(secret.name, secret.replication)

    # the lab's own use: seeding and the region apps ---------------------------------------

    def seed_secret(
        self, project: str, secret_id: str, value: str, locations: list[str] | None
    ) -> None:
        """Create (if needed) a secret and add ``value`` as its newest version."""
        replication: dict[str, Any] = (
            {"automatic": {}}
            if locations is None
            else {"userManaged": {"replicas": [{"location": loc} for loc in locations]}}
        )
        with contextlib.suppress(AlreadyExists):
            self.create_secret(project, secret_id, {"replication": replication})
        encoded = base64.b64encode(value.encode()).decode()
        self.add_version(project, secret_id, {"payload": {"data": encoded}})

    def read_value(self, reference: str, version_id: str, default_project: str) -> str:
        """What a Cloud Run instance reads for a secret reference (``name`` or full name)."""
        match = re.fullmatch(r"projects/([^/]+)/secrets/([^/]+)", reference)
        project, secret_id = match.groups() if match else (default_project, reference)
        reply = self.access_version(project, secret_id, version_id or LATEST)
        return base64.b64decode(reply["payload"]["data"]).decode()

    def snapshot(self) -> dict[str, Any]:
        """State for /_lab/state: names, policies and version states, never a value."""
        with self._lock:
            return {
                secret.name: {
                    "replication": secret.replication.policy_json(),
                    "versions": {str(v.number): v.state for v in secret.versions},
                }
                for secret in self._secrets.values()
            }

    # internals (callers hold self._lock) --------------------------------------------------

    def _secret(self, project: str, secret_id: str) -> Secret:
        secret = self._secrets.get((project_number(project), secret_id))
        if secret is None:
            raise SecretNotFound(
                f"Secret [projects/{project_number(project)}/secrets/{secret_id}] not found "
                "or has no versions."
            )
        return secret

    def _reachable(self, secret: Secret) -> None:
        locations = secret.replication.locations
        if locations is not None and all(self._ctx.is_down(loc) for loc in locations):
            raise ReplicasUnavailable(
                f"Secret [{secret.name}] is unavailable: every replica location "
                f"({', '.join(locations)}) is down."
            )

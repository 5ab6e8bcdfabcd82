"""Run the Cloud Storage contract tests against a peer emulator (issue 14 §5).

Set ``LIFEBOAT_STORAGE_PEER_URL`` to the base URL of a running fake-gcs-server (or any
Cloud Storage emulator with the JSON API at ``/storage/v1``) and the storage contract
tests, Python client and gcloud alike, talk to it instead of the lab's emulator. Unset,
nothing changes. The comparison and its results are in ``lab/STORAGE_PEER.md``.

The tests seed and inspect storage through a backend; against the peer, ``PeerBackend``
does the same through the public JSON API, so each assertion about stored bytes still
holds the peer to it. What only the lab can show (its request log, injected faults, its
staging folder) is not observable on a peer: those tests skip there, with the reason.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

PEER_URL = os.environ.get("LIFEBOAT_STORAGE_PEER_URL", "").rstrip("/") or None


def lab_only(what: str) -> pytest.MarkDecorator:
    """Skip on the peer a test that inspects ``what`` of the lab's own."""
    return pytest.mark.skipif(
        PEER_URL is not None, reason=f"inspects the lab's {what}: not observable on the peer"
    )


@dataclass
class PeerObject:
    """The fields of a stored object the tests read, as the lab's StoredObject names them."""

    md5_hash: str
    size: int
    path: Path


class PeerBackend:
    """The part of ``lab.storage.StorageBackend`` the contract tests use, done through
    the peer's public JSON API. ``reset`` empties the peer, so each test starts clean."""

    def __init__(self, base_url: str, scratch: Path) -> None:
        self.base_url = base_url
        self.scratch = scratch
        self.http = httpx.Client(base_url=base_url, timeout=120)

    def _check(self, response: httpx.Response) -> httpx.Response:
        assert response.is_success, f"peer: {response.status_code} {response.text[:300]}"
        return response

    def reset(self) -> None:
        for bucket in self.http.get("/storage/v1/b").json().get("items", []):
            name = bucket["name"]
            listing = self.http.get(f"/storage/v1/b/{name}/o", params={"versions": "true"})
            for obj in listing.json().get("items", []):
                self.http.delete(
                    f"/storage/v1/b/{name}/o/{quote(obj['name'], safe='')}",
                    params={"generation": obj["generation"]},
                )
            self._check(self.http.delete(f"/storage/v1/b/{name}"))

    def create_bucket(
        self,
        project: str,
        name: str,
        location: str = "US",
        labels: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        body = {"name": name, "location": location, "labels": labels or {}}
        reply = self.http.post("/storage/v1/b", params={"project": project}, json=body)
        return dict(self._check(reply).json())

    def insert_object(
        self,
        bucket: str,
        name: str,
        data: bytes,
        content_type: str = "application/octet-stream",
    ) -> dict[str, Any]:
        reply = self.http.post(
            f"/upload/storage/v1/b/{bucket}/o",
            params={"uploadType": "media", "name": name},
            content=data,
            headers={"Content-Type": content_type},
        )
        return dict(self._check(reply).json())

    def read_object(self, bucket: str, name: str) -> bytes:
        path = f"/storage/v1/b/{bucket}/o/{quote(name, safe='')}"
        return self._check(self.http.get(path, params={"alt": "media"})).content

    def list_objects(self, bucket: str, prefix: str = "") -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        params = {"prefix": prefix}
        while True:
            page = self._check(self.http.get(f"/storage/v1/b/{bucket}/o", params=params)).json()
            items += page.get("items", [])
            if not page.get("nextPageToken"):
                return sorted(items, key=lambda item: str(item["name"]))
            params["pageToken"] = page["nextPageToken"]

    def get_object(self, bucket: str, name: str) -> PeerObject:
        """The object's metadata, and its bytes in a scratch file (as the lab's ``path``)."""
        quoted = quote(name, safe="")
        meta = self._check(self.http.get(f"/storage/v1/b/{bucket}/o/{quoted}")).json()
        fd, local = tempfile.mkstemp(dir=self.scratch)
        with (
            os.fdopen(fd, "wb") as out,
            self.http.stream("GET", f"/storage/v1/b/{bucket}/o/{quoted}?alt=media") as body,
        ):
            self._check(body)
            for chunk in body.iter_bytes():
                out.write(chunk)
        return PeerObject(str(meta.get("md5Hash", "")), int(meta["size"]), Path(local))

    def close(self) -> None:
        self.http.close()


def peer_backend(scratch: Path) -> PeerBackend:
    """An emptied backend on the peer at ``LIFEBOAT_STORAGE_PEER_URL``."""
    assert PEER_URL is not None
    backend = PeerBackend(PEER_URL, scratch)
    backend.reset()
    return backend

"""Probes over https to an address: the TLS server name is the public host, the CA is checked.

The lab serves its front door and region apps over TLS too, with a certificate for
``api.varai.ai`` (no address in it) signed by a CA made at lab start. A probe connects to
``127.0.0.1`` and sends ``Host: api.varai.ai``; it passes only when the TLS server name is
the host as well, and only when it trusts the CA that signed the certificate.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from lab.core.tls import make_ca
from lab.prefect_api import PrefectApi
from tests.flows.lab_checks import PRIMARY, TOPOLOGY, incident, read_object, side_effects
from tests.labharness import Lab


def over_https(ca_bundle: str | None) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        data["health"]["scheme"] = "https"
        data["health"]["ca_bundle"] = ca_bundle

    return edit


@contextmanager
def https_topology(lab: Lab, ca_bundle: str | None) -> Iterator[None]:
    """The lab topology with https probes, for this process's tasks and the worker's runs."""
    from lifeboat import runtime

    with lab.topology_edited(over_https(ca_bundle)):
        runtime.forget()
        try:
            yield
        finally:
            runtime.forget()


def probe(target: str) -> Any:
    from tasks.health import Target, probe

    return probe("lab", Target(target))


def test_the_lab_certificate_names_the_host_not_the_address(fresh_lab: Lab) -> None:
    """Why the probe needs sni_hostname: verified by address, the certificate fails."""
    # A fresh lab: the earlier test may have left a failover or an outage behind.
    context = ssl.create_default_context(cafile=fresh_lab.endpoints["tls_ca"])
    url = fresh_lab.endpoints["front_door_https"] + "/health"
    with httpx.Client(headers={"host": TOPOLOGY.health.host}, verify=context) as client:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            client.get(url)
        named = client.get(url, extensions={"sni_hostname": TOPOLOGY.health.host})
    assert named.status_code == 200


def test_the_front_door_answers_over_http_and_https_in_turn(fresh_lab: Lab) -> None:
    """One front door behind both listeners, as one load balancer has both: requests
    alternating between them all reach the region. Before, a connection to the region
    pooled by one listener's loop was reused by the other's, and failed (a 500)."""
    context = ssl.create_default_context(cafile=fresh_lab.endpoints["tls_ca"])
    host = TOPOLOGY.health.host
    plain = httpx.Client(headers={"host": host})
    tls = httpx.Client(headers={"host": host}, verify=context)
    with plain, tls:
        statuses = []
        for _ in range(3):
            statuses.append(plain.get(fresh_lab.endpoints["front_door"] + "/health").status_code)
            statuses.append(
                tls.get(
                    fresh_lab.endpoints["front_door_https"] + "/health",
                    extensions={"sni_hostname": host},
                ).status_code
            )
    assert statuses == [200] * 6, statuses


@pytest.mark.parametrize("ca_bundle", ["lab:ca", "path"])
def test_probe_over_https_to_an_address_passes(fresh_lab: Lab, ca_bundle: str) -> None:
    bundle = fresh_lab.endpoints["tls_ca"] if ca_bundle == "path" else ca_bundle
    since = fresh_lab.last_seq()
    with https_topology(fresh_lab, bundle):
        reports = {t: probe(t) for t in ("public", "primary", "secondary")}
    assert reports["public"].all_ok, reports["public"].summary()
    assert reports["primary"].all_ok, reports["primary"].summary()
    assert {c.region for c in reports["primary"].checks} <= {PRIMARY.name, None}
    # TLS to the secondary works too: every check got an HTTP answer (whatever its status).
    assert all(c.status is not None for c in reports["secondary"].checks)
    # The probes went through the TLS listeners: the region apps logged them.
    assert len(fresh_lab.requests(since=since)) >= len(TOPOLOGY.health.checks)


def test_probe_refuses_a_certificate_from_an_untrusted_ca(fresh_lab: Lab, tmp_path: Path) -> None:
    cert, _ = make_ca("Some other CA")
    other = tmp_path / "other-ca.pem"
    other.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    for bundle in (str(other), None):  # another CA, and the system trust store
        with https_topology(fresh_lab, bundle):
            report = probe("primary")
        assert report.failed == len(TOPOLOGY.health.checks), report.summary()
        assert {c.error for c in report.checks} == {"ConnectError"}


def test_failback_guard_reads_the_primary_healthy_over_https(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    """With the primary healthy, the guard passes and the next check refuses instead."""
    since = fresh_lab.last_seq()
    with https_topology(fresh_lab, "lab:ca"):
        final = api.wait(api.launch("failback/lab", {"reason": "check the guard"})["id"])
    assert final["state"]["type"] == "FAILED"
    message = final["state"]["message"]
    assert "is unhealthy" not in message, message
    assert "there is no failover to undo" in message
    assert side_effects(fresh_lab, since) == []


def test_approval_guard_pauses_for_a_healthy_primary_over_https(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    """A healthy primary probed over https asks for approval; "no" changes nothing."""
    since = fresh_lab.last_seq()
    inc = incident("TLS")
    with https_topology(fresh_lab, "lab:ca"):
        run = api.launch("failover/lab", {"reason": "planned", "incident_id": inc})
        # Bounded: before the fix the primary looked down and the failover just went ahead.
        api.wait(run["id"], states={"PAUSED", "FAILED", "COMPLETED", "CRASHED"}, timeout=90)
        assert api.state(run["id"]) == "PAUSED"
        api.resume(run["id"], {"approved": False, "approver": "sre", "note": "primary is fine"})
        final = api.wait(run["id"])
    assert final["state"]["type"] == "FAILED"
    assert side_effects(fresh_lab, since) == []
    record = json.loads(
        read_object(fresh_lab, TOPOLOGY.backups.records_bucket, f"failover/{inc}.json")
    )
    assert record["outcome"] == "rejected"

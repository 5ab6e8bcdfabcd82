"""The TLS server name a probe sends: pure decision logic, no lab."""

from __future__ import annotations

import ssl
from pathlib import Path

import certifi
import pytest

from tasks.errors import PermanentError
from tasks.probe_tls import tls_extensions, trust


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # Connecting to an address for a named host over https: the name goes in SNI.
        ("https://127.0.0.1:8443/health", {"sni_hostname": "api.varai.ai"}),
        ("https://34.120.10.10/health", {"sni_hostname": "api.varai.ai"}),
        ("https://[2001:db8::1]/health", {"sni_hostname": "api.varai.ai"}),
        # The URL already names the host: httpx sends it by itself.
        ("https://api.varai.ai/health", {}),
        ("https://API.varai.ai/health", {}),
        # Plain http has no TLS name to set.
        ("http://127.0.0.1:8080/health", {}),
    ],
)
def test_tls_server_name_is_the_public_host(url: str, expected: dict[str, str]) -> None:
    assert tls_extensions(url, "api.varai.ai") == expected


def test_a_bundle_is_loaded_once_per_process_and_a_bad_one_is_refused_each_time(
    tmp_path: Path,
) -> None:
    """Each probe round opens a client: the trust store is loaded once, not per round.
    A bundle that fails to load is refused with its path named, and not remembered:
    fixed on disk, the next round loads it."""
    from lifeboat.topology import load_topology

    topo = load_topology("lab")
    assert trust(topo) is trust(topo)

    bundle = tmp_path / "ca.pem"
    bundle.write_text("not a certificate")
    broken = topo.model_copy(
        update={"health": topo.health.model_copy(update={"ca_bundle": str(bundle)})}
    )
    for _ in range(2):
        with pytest.raises(PermanentError, match=f"cannot load ca_bundle {bundle}"):
            trust(broken)
    bundle.write_text(Path(certifi.where()).read_text())  # any well-formed CA bundle
    assert isinstance(trust(broken), ssl.SSLContext)

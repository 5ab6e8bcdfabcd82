"""The TLS server name a probe sends: pure decision logic, no lab."""

from __future__ import annotations

import pytest

from tasks.probe_tls import tls_extensions


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

"""How a probe speaks TLS: whom it trusts, and which name it asks the server for.

No Prefect here (unit tests import it before any lab starts); tasks/health.py uses it.
"""

from __future__ import annotations

import functools
import ssl

import httpx

from lifeboat.endpoints import resolve
from lifeboat.topology import Topology
from tasks.errors import PermanentError


def trust(topo: Topology) -> ssl.SSLContext:
    """What probes over https trust: the topology's CA bundle, else the system store.

    Certificates and host names are always checked; there is no switch to turn that off.
    """
    bundle = topo.health.ca_bundle
    if bundle == "lab:ca":
        bundle = resolve(topo.endpoints).tls_ca
        if bundle is None:
            raise PermanentError("health: ca_bundle is lab:ca but the lab publishes no CA")
    try:
        return _context(bundle)
    except (OSError, ssl.SSLError) as exc:
        raise PermanentError(f"health: cannot load ca_bundle {bundle}: {exc}") from exc


@functools.cache
def _context(bundle: str | None) -> ssl.SSLContext:
    """One context per bundle for the process: each probe round opens a client, and
    loading a store (the system's: about 140 certificates) took 20-40 ms of CPU each
    time, a tenth of a flow run's CPU in the lab (session 25, py-spy). A context is safe
    to share between connections and threads; a bundle that failed to load is not kept.
    """
    return ssl.create_default_context(cafile=bundle)


def tls_extensions(url: str, host: str) -> dict[str, str]:
    """httpx request extensions that make the TLS server name ``host``.

    httpx takes the TLS server name (SNI, and the name the certificate must match) from
    the URL, not from the Host header. A probe that connects to an address for a named
    host over https must say the name itself, or a real HTTPS front end answers with a
    certificate that does not match (or the wrong one) and every probe fails.
    """
    target = httpx.URL(url)
    if target.scheme == "https" and target.host.lower() != host.lower():
        return {"sni_hostname": host}
    return {}

"""The lab process: every emulator, the region apps, the front door and the control API.

They share one process so that the region apps and the front door read the very state the
clients change. PostgreSQL clusters and MongoDB run as child processes that ``stop``
(and SIGTERM) take down with it.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lab import compute, dns, monitoring, resourcemanager, run, secretmanager, sql, storage
from lab.control.app import create_control_app
from lab.core import tls
from lab.core.context import LabContext
from lab.core.serve import ThreadedServer, ensure_port_free
from lab.core.settings import LabSettings
from lab.core.tls import TlsFiles
from lab.frontdoor.app import create_front_door
from lab.frontdoor.cache import EdgeCache
from lab.frontdoor.resolver import CachingResolver
from lab.mongo.server import MongoServer
from lab.regions.app import create_region_app
from lab.regions.health import RegionSpec
from lab.regions.ingress import load_balancer_refusal
from lab.regions.instances import AppInstances
from lab.seed import seed_cloud, seed_mongo
from lab.topology import LabTopology, Role, read_topology

log = logging.getLogger("lab")

# Folders the emulators and MongoDB keep their data in, under the lab root.
STATE_FOLDERS = ("sql", "sql-backups", "storage", "mongo")


def void(_: object) -> None:
    """Drop a return value where a callback must return None."""


def listener_names(topology: LabTopology) -> list[str]:
    return [
        "control",
        "dns",
        "run",
        "sql",
        "compute",
        "storage",
        "front_door",
        "mongodb",
        "front_door_https",
        "secretmanager",
        "monitoring",
        "resourcemanager",
    ]


def tls_hostnames(topology: LabTopology) -> list[str]:
    """The public names the lab's certificate covers: the probes' host, the CDN's, the records'."""
    names = [topology.health.host, topology.cdn.host]
    names += [r.name.rstrip(".") for r in topology.dns.records]
    return list(dict.fromkeys(n.lower() for n in names))


class LabDaemon:
    def __init__(self, settings: LabSettings, topology: LabTopology):
        self.settings = settings
        self.topology = topology
        self.ctx = LabContext.create(settings)
        self.cache = EdgeCache()
        self.resolver = CachingResolver(self.ctx)
        self.servers: list[ThreadedServer] = []
        self.mongo = MongoServer(
            settings.root / "mongo",
            settings.host,
            settings.port("mongodb"),
            settings.root / "logs" / "mongo.log",
        )
        self._reset_lock = threading.Lock()
        roles = list(Role)
        self.regions = {
            role: RegionSpec(
                topology.regions.by_role(role).name,
                topology.regions.by_role(role).project,
                tuple(s.name for s in topology.services),
            )
            for role in roles
        }
        self.region_ports = {
            self.regions[role].name: settings.region_app_port(i) for i, role in enumerate(roles)
        }
        self.region_https_ports = {
            self.regions[role].name: settings.region_app_https_port(i)
            for i, role in enumerate(roles)
        }
        self.tls: TlsFiles | None = None

    # -- lifecycle ---------------------------------------------------------------
    def check_ports(self) -> None:
        for name in listener_names(self.topology):
            ensure_port_free(self.settings.host, self.settings.port(name), name)
        for region, port in self.region_ports.items():
            ensure_port_free(self.settings.host, port, f"region app {region}")
        for region, port in self.region_https_ports.items():
            ensure_port_free(self.settings.host, port, f"region app {region} (https)")

    def start(self) -> dict[str, Any]:
        (self.settings.root / "logs").mkdir(parents=True, exist_ok=True)
        self.check_ports()
        self._wipe_state()
        ctx = self.ctx
        _, storage_app = storage.create(ctx)
        _, dns_app = dns.create(ctx)
        _, run_app = run.create(ctx)
        _, secretmanager_app = secretmanager.create(ctx)
        _, resourcemanager_app = resourcemanager.create(ctx)
        # Before seeding: the seeded services' instances read their secret as they start.
        AppInstances.attach(ctx, (self.topology.cloud_sql.primary.project,))
        compute_backend, compute_app = compute.create(ctx)
        compute_backend.on_invalidation(lambda host, path: void(self.cache.invalidate(host, path)))
        _, sql_app = sql.create(ctx)
        _, monitoring_app = monitoring.create(ctx)
        self.mongo.start()
        self._seed()
        # A new CA at every start: nothing outside this lab folder ever trusts it.
        self.tls = tls.issue(self.settings.root / "tls", tls_hostnames(self.topology))

        host = self.settings.host
        apps = [
            ("dns", dns_app, self.settings.port("dns")),
            ("run", run_app, self.settings.port("run")),
            ("sql", sql_app, self.settings.port("sql")),
            ("compute", compute_app, self.settings.port("compute")),
            ("storage", storage_app, self.settings.port("storage")),
            ("secretmanager", secretmanager_app, self.settings.port("secretmanager")),
            ("monitoring", monitoring_app, self.settings.port("monitoring")),
            ("resourcemanager", resourcemanager_app, self.settings.port("resourcemanager")),
        ]
        https: list[tuple[str, Any, int]] = []
        for spec in self.regions.values():
            region_app = create_region_app(ctx, spec)
            apps.append((f"region-{spec.name}", region_app, self.region_ports[spec.name]))
            https.append(
                (f"region-{spec.name}-https", region_app, self.region_https_ports[spec.name])
            )
        front_door = self._front_door()
        apps.append(("front_door", front_door, self.settings.port("front_door")))
        https.append(("front_door_https", front_door, self.settings.port("front_door_https")))
        control = create_control_app(
            ctx,
            [s.name for s in self.regions.values()],
            self.reset,
            self.state,
            mongo_data_dir=self.mongo.data_dir,
        )
        apps.append(("control", control, self.settings.port("control")))
        for name, app, port in apps:
            server = ThreadedServer(app, host, port, name)
            server.start()
            self.servers.append(server)
        # The same apps (same state) behind TLS, as a real HTTPS front end serves them.
        for name, app, port in https:
            server = ThreadedServer(app, host, port, name, tls=(self.tls.cert, self.tls.key))
            server.start()
            self.servers.append(server)
        return self.endpoints()

    def _wipe_state(self) -> None:
        """Every start is the seeded topology: drop data a crashed lab left behind."""
        for name in STATE_FOLDERS:
            shutil.rmtree(self.settings.root / name, ignore_errors=True)

    def _front_door(self) -> Any:
        address_to_region: dict[str, str] = {}
        for record in self.topology.dns.records:
            for role, addresses in record.rrdatas.items():
                for address in addresses:
                    address_to_region[address] = self.regions[role].name

        def app_url(region: str) -> str | None:
            port = self.region_ports.get(region)
            return f"http://{self.settings.host}:{port}" if port else None

        refusal = load_balancer_refusal(self.ctx, self.regions.values())
        return create_front_door(
            self.ctx, address_to_region.get, app_url, self.cache, self.resolver, refusal
        )

    def _seed(self) -> None:
        # The two share nothing, so MongoDB's seed runs beside the cloud's, whose Cloud SQL
        # clusters are most of a reset (0.2 s of a reset's 0.9 s was MongoDB's, after it).
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="seed-mongo") as pool:
            mongo = pool.submit(seed_mongo, self.mongo.uri, self.topology)
            seed_cloud(self.ctx, self.topology)
            mongo.result()

    def reset(self) -> None:
        """Back to the seeded topology: drop faults, outages, state and data, then re-seed."""
        with self._reset_lock:
            self.ctx.clear_runtime()
            self.ctx.latency.reset(self.settings.time_scale)
            self.cache.clear()
            self.resolver.clear()
            names = (
                "dns",
                "run",
                "compute",
                "storage",
                "sql",
                "secretmanager",
                "resourcemanager",
                "app_instances",
            )
            for name in names:
                self.ctx.backends[name].reset()
            self._seed()

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()
        self.ctx.scheduler.stop()
        if "sql" in self.ctx.backends:
            self.ctx.backends["sql"].shutdown()
        self.mongo.stop()

    # -- reporting ---------------------------------------------------------------
    def endpoints(self) -> dict[str, Any]:
        s = self.settings
        return {
            "dns": s.url("dns"),
            "run": s.url("run"),
            "sql": s.url("sql"),
            "compute": s.url("compute"),
            "storage": s.url("storage"),
            "secretmanager": s.url("secretmanager"),
            "monitoring": s.url("monitoring"),
            "resourcemanager": s.url("resourcemanager"),
            "front_door": s.url("front_door"),
            "control": s.url("control"),
            "mongodb_uri": self.mongo.uri,
            "mongodb_server": self.mongo.kind,
            "region_apps": {r: f"http://{s.host}:{p}" for r, p in self.region_ports.items()},
            "front_door_https": f"https://{s.host}:{s.port('front_door_https')}",
            "region_apps_https": {
                r: f"https://{s.host}:{p}" for r, p in self.region_https_ports.items()
            },
            "tls_ca": str(self.tls.ca) if self.tls else None,
            "time_scale": s.time_scale,
        }

    def state(self) -> dict[str, Any]:
        backends = {
            name: backend.snapshot()
            for name, backend in self.ctx.backends.items()
            if hasattr(backend, "snapshot")
        }
        return {
            "outages": self.ctx.outages(),
            "latency": self.ctx.latency.snapshot(),
            "faults": [r.model_dump() for r in self.ctx.faults.rules()],
            "edge_cache": self.cache.snapshot(),
            "resolver_cache": self.resolver.snapshot(),
            "backends": backends,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the Lifeboat lab in the foreground.")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--topology", type=Path, required=True)
    parser.add_argument("--base-port", type=int, default=18780)
    parser.add_argument("--time-scale", type=float, default=0.1)
    parser.add_argument("--pg-address-prefix", default="127.0.10.")
    parser.add_argument("--pg-port", type=int, default=5432)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = LabSettings(
        root=args.root.resolve(),
        base_port=args.base_port,
        time_scale=args.time_scale,
        pg_address_prefix=args.pg_address_prefix,
        pg_port=args.pg_port,
        topology=args.topology,
    )
    daemon = LabDaemon(settings, read_topology(args.topology))
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    started = time.monotonic()
    try:
        endpoints = daemon.start()
    except Exception:
        log.exception("lab failed to start")
        daemon.stop()
        return 1
    ready = settings.root / "daemon.json"
    # Written whole, then renamed: the supervisor polls for the file and must never read
    # it half written (it did once: an empty file failed `lab up`).
    partial = ready.with_suffix(".partial")
    partial.write_text(json.dumps(endpoints, indent=2))
    partial.replace(ready)
    log.info("lab ready in %.1f s: %s", time.monotonic() - started, json.dumps(endpoints))
    stopping.wait()
    log.info("lab stopping")
    ready.unlink(missing_ok=True)
    daemon.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

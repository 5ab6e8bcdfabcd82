"""Failover time as the topology grows: 1, 10, 100 services and 1, 10, 50 DNS records.

The lab is seeded from a generated topology (the lab's own with its services and record
sets multiplied). Figures per size: failover_s_<services>x<records>, the lab's Run and
DNS request counts and 429s; then scale_100_over_1 (goal ≤ 1.5). Services scale with
bounded concurrency (the failover's 32 workers), so the Run API never sees a storm.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml

from bench.failover import run_failover
from bench.labctl import REPO, bench_lab, figure

SIZES = [(1, 1), (10, 10), (100, 50)]


def generated_topology(services: int, records: int, folder: Path) -> Path:
    data: dict[str, Any] = yaml.safe_load((REPO / "deployments/environments/lab.yaml").read_text())
    template = data["services"][0]
    made = [dict(template, name="auth-service")]
    made += [dict(template, name=f"svc-{n:03d}", checks=["/health"]) for n in range(1, services)]
    data["services"] = made[:services]
    record = data["dns"]["records"][0]
    data["dns"]["records"] = [record] + [
        dict(record, name=f"r{n:03d}.varai.ai.") for n in range(1, records)
    ]
    # /<service>/status needs the seed's services; every size checks the same two paths.
    data["health"]["checks"] = [{"path": "/health"}, {"path": "/version"}]
    path = folder / "lab.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def main(argv: list[str] | None = None) -> int:
    import sys

    wanted = (argv if argv is not None else sys.argv[1:]) or [f"{s}x{r}" for s, r in SIZES]
    sizes = [(int(w.split("x")[0]), int(w.split("x")[1])) for w in wanted]
    times: dict[int, float] = {}
    for services, records in sizes:
        with tempfile.TemporaryDirectory(prefix="lifeboat-bench-topology-") as folder:
            topology = generated_topology(services, records, Path(folder))
            with bench_lab(topology=topology) as lab:
                figures = run_failover(lab, f"scale {services}x{records}")
                calls = lab.requests()
                run_calls = [c for c in calls if c["api"] == "run"]
                dns_calls = [c for c in calls if c["api"] == "dns"]
                throttled = [c for c in calls if c.get("status") == 429]
            size = f"{services}x{records}"
            times[services] = figures["failover_s"]
            figure(f"failover_s_{size}", figures["failover_s"])
            figure(f"run_calls_{size}", len(run_calls))
            figure(f"dns_calls_{size}", len(dns_calls))
            figure(f"http_429_{size}", len(throttled))
    if 100 in times and 1 in times:
        figure("scale_100_over_1", times[100] / times[1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

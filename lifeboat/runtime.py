"""Per-process lookups every task shares: an environment's topology and its clients."""

from __future__ import annotations

import functools

from lifeboat import budget
from lifeboat.clients import ClientFactory
from lifeboat.endpoints import resolve
from lifeboat.topology import Topology, load_topology


@functools.cache
def topology(environment: str) -> Topology:
    return load_topology(environment)


@functools.cache
def clients(environment: str) -> ClientFactory:
    return ClientFactory(resolve(topology(environment).endpoints))


def call_timeout(environment: str) -> float:
    """Seconds one API call may take before it counts as a (retryable) timeout.

    Inside a task, capped by what is left of the step's budget (``lifeboat.budget``).
    """
    return budget.call_timeout(topology(environment).endpoints.call_timeout_s)


def clock_scale(environment: str) -> float:
    """Wall seconds per second of the world the APIs model: 1 on Google, the lab's
    ``time_scale`` on a lab (lifeboat/endpoints.py)."""
    return clients(environment).endpoints.time_scale


def forget() -> None:
    """Drop cached topologies and clients (a lab restarted on new ports, tests)."""
    topology.cache_clear()
    clients.cache_clear()

"""The region apps' own database work: is a URL writable, and the orders write path.

Every connection uses the URL the service's instances hold (lab/regions/instances.py),
never "the primary of the region": an app whose secret names the wrong instance writes
to it, or fails, as a real one would. Nothing here puts the URL (it may carry a password)
into a reply or a log: only ``host:port/db``.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

CONNECT_TIMEOUT_S = 2


def where(url: str) -> str:
    """``host:port/dbname`` of a URL, to name a database without its credentials."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(an unparseable database URL)"
    return f"{parts.get('host', '?')}:{parts.get('port', 5432)}/{parts.get('dbname', '?')}"


def host_of(url: str) -> str | None:
    try:
        host = conninfo_to_dict(url).get("host")
    except psycopg.ProgrammingError:
        return None
    return str(host) if host else None


class OrderExists(Exception):
    pass


def insert_order(url: str, order_id: str, region: str, body: str) -> None:
    """Insert and commit; returns only once the commit is acknowledged by the server."""
    try:
        with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S) as conn:
            conn.execute(
                "INSERT INTO orders (id, region, body) VALUES (%s, %s, %s)",
                (order_id, region, body),
            )
            conn.commit()
    except psycopg.errors.UniqueViolation as exc:
        raise OrderExists(order_id) from exc


def read_order(url: str, order_id: str) -> dict[str, Any] | None:
    with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True) as conn:
        row = conn.execute(
            "SELECT id, region, body, created_at::text FROM orders WHERE id = %s", (order_id,)
        ).fetchone()
    if row is None:
        return None
    return {"id": row[0], "region": row[1], "body": row[2], "created_at": row[3]}

"""Record sets the lab's zone holds besides the topology's own: what a real zone also has.

Real zones hold more than the records Lifeboat switches. A routing-policy set (geo,
weighted or failover) anywhere in the zone is the case that matters: it has no
``rrdatas``, and a client that lists the whole zone must cope with it.
"""

from __future__ import annotations

from typing import Any


def geo_record_set(record_name: str, addresses_by_region: dict[str, list[str]]) -> dict[str, Any]:
    """``geo.<record_name>``: a geo policy answering each region with that region's addresses."""
    return {
        "name": f"geo.{record_name}",
        "type": "A",
        "ttl": 300,
        "routingPolicy": {
            "geo": {
                "items": [
                    {"location": region, "rrdatas": list(addresses)}
                    for region, addresses in addresses_by_region.items()
                ],
                "enableFencing": False,
            }
        },
    }

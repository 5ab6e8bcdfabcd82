"""Realistic documents for the lab's `varai` database: sessions, products, analytics."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, MongoClient
from pymongo.database import Database

FRAME_SHAPES = ["round", "square", "cat-eye", "aviator", "rectangle", "oval"]
MATERIALS = ["acetate", "titanium", "stainless steel", "TR90", "wood"]
EVENTS = ["view", "try_on", "add_to_cart", "purchase", "recommendation_click"]


def _product(rng: random.Random, i: int) -> dict[str, Any]:
    return {
        "_id": ObjectId(),
        "sku": f"VR-{i:05d}",
        "name": f"{rng.choice(['Nova', 'Atlas', 'Luna', 'Orion', 'Vega'])} {i}",
        "shape": rng.choice(FRAME_SHAPES),
        "material": rng.choice(MATERIALS),
        "price_cents": rng.randrange(4900, 34900, 100),
        "dimensions_mm": {"lens": rng.randint(46, 58), "bridge": rng.randint(14, 22)},
        "tags": rng.sample(["bestseller", "new", "eco", "polarized", "blue-light"], k=2),
        "in_stock": rng.random() > 0.1,
    }


def _session(rng: random.Random, now: datetime, i: int) -> dict[str, Any]:
    started = now - timedelta(minutes=rng.randint(1, 60 * 24 * 7))
    return {
        "_id": ObjectId(),
        "session_id": f"s-{i:06d}",
        "user_id": f"u-{rng.randint(1, 500):05d}",
        "started_at": started,
        "face_shape": rng.choice(["oval", "round", "square", "heart"]),
        "viewed": [f"VR-{rng.randint(0, 199):05d}" for _ in range(rng.randint(1, 6))],
        "device": {"type": rng.choice(["ios", "android", "web"]), "dpr": rng.choice([1, 2, 3])},
    }


def _event(rng: random.Random, now: datetime, i: int) -> dict[str, Any]:
    return {
        "_id": ObjectId(),
        "event": rng.choice(EVENTS),
        "at": now - timedelta(seconds=rng.randint(1, 86400 * 30)),
        "session_id": f"s-{rng.randint(0, 299):06d}",
        "sku": f"VR-{rng.randint(0, 199):05d}",
        "latency_ms": round(rng.uniform(20, 900), 1),
    }


def seed_varai(uri: str, database: str = "varai", seed: int = 27017) -> dict[str, int]:
    """Replace the database's collections with a deterministic data set; return counts."""
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    docs = {
        "products": [_product(rng, i) for i in range(200)],
        "sessions": [_session(rng, now, i) for i in range(300)],
        "analytics": [_event(rng, now, i) for i in range(1000)],
    }
    client: MongoClient[dict[str, Any]]
    with MongoClient(uri, serverSelectionTimeoutMS=5000) as client:
        db: Database[dict[str, Any]] = client[database]
        for name, items in docs.items():
            db.drop_collection(name)
            db[name].insert_many(items)
        db.products.create_index([("sku", ASCENDING)], unique=True)
        db.sessions.create_index([("user_id", ASCENDING)])
        db.analytics.create_index([("at", ASCENDING)])
    return {name: len(items) for name, items in docs.items()}

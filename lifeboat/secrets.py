"""Read secrets from Prefect Secret blocks or the environment; never log or return them raw."""

from __future__ import annotations

import os
import re
from typing import Any

_ENV_SAFE = re.compile(r"[^A-Z0-9]+")


class SecretMissing(LookupError):
    pass


def env_name(secret: str) -> str:
    """`lifeboat-mongodb-uri` → `LIFEBOAT_MONGODB_URI`."""
    return _ENV_SAFE.sub("_", secret.upper()).strip("_")


def read_secret(name: str, env: str | None = None) -> str:
    """The environment variable wins (break-glass, CI); then the Prefect Secret block."""
    value = os.environ.get(env or env_name(name))
    if value:
        return value
    try:
        from prefect.blocks.system import Secret

        block: Any = Secret.load(name, _sync=True)  # type: ignore[call-arg]
        return str(block.get())
    except Exception as exc:
        # Name the secret, never its value.
        raise SecretMissing(
            f"secret {name!r} is not set: create the Prefect Secret block "
            f"or set ${env or env_name(name)}"
        ) from exc

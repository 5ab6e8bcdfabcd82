"""Where the lab lives and listens: one place for every address and port."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

# Offsets from base_port; one port per listener keeps the address scheme predictable.
PORT_OFFSETS: dict[str, int] = {
    "control": 0,
    "dns": 1,
    "run": 2,
    "sql": 3,
    "compute": 4,
    "storage": 5,
    "front_door": 6,
    "mongodb": 7,
    "prefect": 8,
    "region_apps": 10,  # one port per region from here on
    "front_door_https": 30,  # the front door again, over TLS with the lab's CA
    "region_apps_https": 31,  # one port per region from here on, over TLS
    "secretmanager": 20,  # between the region apps (10+) and the HTTPS block (30+)
    "monitoring": 21,
    "resourcemanager": 22,
}


class LabSettings(BaseModel):
    root: Path = Field(description="folder that holds the lab's state, logs and data")
    host: str = "127.0.0.1"
    base_port: int = Field(18780, ge=1024, le=65000)
    time_scale: float = Field(0.1, ge=0)
    # Each Cloud SQL instance gets its own loopback address so it can keep port 5432.
    pg_address_prefix: str = "127.0.10."
    pg_port: int = 5432
    topology: Path | None = None
    # Google's list methods "may return fewer results than requested, even if not at the
    # end of the collection" (google.aip.dev/158), so a client must follow nextPageToken.
    # The lab serves at most this many items a page, whatever the client asks for, so
    # every list with more items than this is paged.
    page_cap: int = Field(2, ge=1, description="most items any list returns in one page")

    def port(self, name: str) -> int:
        return self.base_port + PORT_OFFSETS[name]

    def url(self, name: str) -> str:
        return f"http://{self.host}:{self.port(name)}"

    def region_app_port(self, index: int) -> int:
        return self.base_port + PORT_OFFSETS["region_apps"] + index

    def region_app_https_port(self, index: int) -> int:
        return self.base_port + PORT_OFFSETS["region_apps_https"] + index

"""Where each API lives: all at Google, or all somewhere else, never a silent mix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from lifeboat.endpoints import LAB_DIR_ENV, resolve
from lifeboat.topology import (
    API_NAMES,
    ENVIRONMENTS_DIR,
    Endpoints,
    TopologyError,
    parse_topology_file,
)

LAB_ADDRESSES = {name: f"http://127.0.0.1:{9000 + i}" for i, name in enumerate(API_NAMES)}


def _with_endpoints(tmp_path: Path, endpoints: dict[str, Any]) -> Path:
    data = yaml.safe_load((ENVIRONMENTS_DIR / "lab.yaml").read_text())
    data["endpoints"] = endpoints
    path = tmp_path / "env.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("left_out", API_NAMES)
def test_an_environment_that_sets_some_endpoints_names_the_missing_api(
    tmp_path: Path, left_out: str
) -> None:
    given = {k: v for k, v in LAB_ADDRESSES.items() if k != left_out}
    with pytest.raises(TopologyError, match=rf"endpoints: .* but {left_out} not"):
        parse_topology_file(_with_endpoints(tmp_path, given))


def test_lab_dir_and_explicit_endpoints_do_not_mix(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match="lab_dir reads every address from the lab; drop dns"):
        parse_topology_file(_with_endpoints(tmp_path, {"lab_dir": ".lab", "dns": "http://x"}))


def test_all_or_none_is_accepted() -> None:
    assert resolve(Endpoints()).is_google
    everything = resolve(Endpoints(**LAB_ADDRESSES))
    assert not everything.is_google and everything.sql == LAB_ADDRESSES["sql"]


def test_a_lab_without_an_apis_address_is_refused_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An endpoints.json from before Cloud SQL spoke REST has sql_grpc and no sql.
    old = {k: v for k, v in LAB_ADDRESSES.items() if k != "sql"} | {"sql_grpc": "127.0.0.1:1"}
    (tmp_path / "endpoints.json").write_text(json.dumps(old))
    monkeypatch.setenv(LAB_DIR_ENV, str(tmp_path))
    with pytest.raises(TopologyError, match="gives no address for sql"):
        resolve(Endpoints(lab_dir=".lab"))
    (tmp_path / "endpoints.json").write_text(json.dumps(LAB_ADDRESSES))
    assert resolve(Endpoints(lab_dir=".lab")).sql == LAB_ADDRESSES["sql"]


@pytest.mark.parametrize(
    ("compute", "base"),
    [
        (None, "https://compute.googleapis.com/compute/v1/"),
        ("http://127.0.0.1:9005", "http://127.0.0.1:9005/compute/v1/"),
        ("http://127.0.0.1:9005/", "http://127.0.0.1:9005/compute/v1/"),
    ],
)
def test_the_url_map_calls_go_to_compute_v1_under_the_endpoint(
    compute: str | None, base: str
) -> None:
    """An endpoint override replaces the discovery document's whole base, ``compute/v1/``
    included: the client factory puts the path back, or every purge would be a 404."""
    from lifeboat.clients import ClientFactory
    from lifeboat.endpoints import ResolvedEndpoints

    factory = ClientFactory(ResolvedEndpoints(compute=compute))
    service = factory.compute.service
    purge = service.urlMaps().invalidateCache(
        project="p", urlMap="m", requestId="r", body={"path": "/x", "host": "h"}
    )
    assert (purge.method, purge.uri) == (
        "POST",
        f"{base}projects/p/global/urlMaps/m/invalidateCache?requestId=r&alt=json",
    )
    assert service.urlMaps().get(project="p", urlMap="m").uri == (
        f"{base}projects/p/global/urlMaps/m?alt=json"
    )

"""Hypothesis strategies for what Lifeboat takes in: topology files and flow parameters.

Shared by the unit tier's property-based checks (tests/unit/test_input_fuzz.py) and the
bad-input sweep (reliability/badinput.py), which launches a sample of them against a lab.
They live here, not under tests, because the sweeps may not import the tests.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from hypothesis import strategies as st

from lifeboat.topology import ENVIRONMENTS_DIR

LAB = yaml.safe_load((ENVIRONMENTS_DIR / "lab.yaml").read_text())

# Values of every JSON/YAML shape, odd ones included: what a typo or a bad merge writes.
ODD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=40),
    st.sampled_from(["", " ", "-1", "0", "us-central1", "lab:front_door", "gs://x", "Bad_Name"]),
    st.lists(st.integers(min_value=-3, max_value=3), max_size=3),
    st.dictionaries(st.sampled_from(["name", "min", "max", "x"]), st.integers(-2, 2), max_size=2),
)


def value_paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value in a parsed file."""
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += value_paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += value_paths(value, (*prefix, index))
    return out


PATHS = value_paths(LAB)


def _parent(data: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        data = data[key]
    return data


@st.composite
def mutated_topologies(draw: st.DrawFn) -> tuple[dict[str, Any], tuple[Any, ...], str]:
    """The lab file with one value replaced, one key removed, or one unknown key (or list
    item) added; with the path of what changed."""
    data = copy.deepcopy(LAB)
    path = draw(st.sampled_from(PATHS))
    parent = _parent(data, path)
    kind = draw(st.sampled_from(["replace", "remove", "add"]))
    if kind == "replace":
        parent[path[-1]] = draw(ODD)
    elif kind == "remove" and isinstance(parent, dict):
        del parent[path[-1]]
    elif kind == "remove":
        parent.pop(path[-1])
    elif isinstance(parent, dict):
        key = f"unknown_{draw(st.integers(0, 9))}"
        parent[key] = draw(ODD)
        path = (*path[:-1], key)
    else:
        parent.append(draw(ODD))
    return data, path, kind


# -- flow parameters ------------------------------------------------------------------

NAMES = st.one_of(
    st.sampled_from(["lab", "prod", "LAB", "../lab", "", "lab ", "lab\n"]),
    st.text(max_size=40),
)
INCIDENTS = st.one_of(
    st.none(),
    st.sampled_from(["INC-1", "ab", "a" * 64, "a" * 65, "-bad", "ok.id:1", "x y", "INC\n1"]),
    st.text(max_size=70),
)
REASONS = st.one_of(
    st.sampled_from(["", "   ", "outage", "x" * 500, "x" * 501, "line\nbreak"]),
    st.text(max_size=600),
)
OPERATORS = st.one_of(st.sampled_from(["sre@example.com", "", "o" * 100, "o" * 101]), st.text())

"""The fidelity ledger (lab/FIDELITY.md) stays true: every test it names exists, and
every row gives a source, Google's or one that says it is the lab's own rule or a guess.

A row's test cell names tests in these forms:
- ``tests/contract/test_dns.py::test_x``: that test in that module;
- ``::test_y``: in the module named last before it, in the cell or earlier in the section;
- ``tests/flows/test_drill.py``: the module itself;
- ``test_name`` alone: a test of that name somewhere under tests/;
- ``lab/run/models.py::cold_start_delay``: a function the row points at instead of a test;
- "same as above", "same test": the previous row's tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LEDGER = REPO / "lab" / "FIDELITY.md"

MODULE = r"(?:tests|lab)/[\w/*.-]*?\.py"
# One reference: a module path with an optional ::name, a bare ::name, or a bare test name.
REFERENCE = re.compile(
    rf"(?P<module>{MODULE})(?:::(?P<named>\w+))?|::(?P<sibling>\w+)|(?P<bare>\btest_\w+)"
)
DEF = re.compile(r"^\s*(?:async\s+)?def\s+(\w+)\s*\(", re.MULTILINE)

# A source that names Google: its documentation, its API definitions (discovery documents,
# REST references), its client libraries or its CLI.
GOOGLE_SOURCE = re.compile(
    r"cloud\.google\.com|googleapis|discovery|gcloud|google-cloud-|google-api-python-client"
    r"|gcp-clients\.md|client-library|reference|run v2|run\.v2"
    # A cloud.google.com documentation path the ledger writes without its host.
    r"|\b(?:run|sql|dns|compute|storage|secret-manager)/docs/"
    # The lab's MongoDB stands in for MongoDB, not a Google API: MongoDB documents it.
    r"|mongodb\.com/docs/"
    # Nor does the lab's PostgreSQL: its own documentation says how roles behave.
    r"|postgresql\.org/docs/",
    re.IGNORECASE,
)
LAB_RULE = re.compile(r"lab rule|guess", re.IGNORECASE)
SAME_AS_BEFORE = re.compile(r"^(?:same )?as above\b", re.IGNORECASE)
SAME_TEST = re.compile(r"^same test\b", re.IGNORECASE)


@dataclass
class Row:
    section: str
    line: int
    behaviour: str
    source: str
    tests: str
    references: list[str] = field(default_factory=list)


def _cells(line: str) -> list[str]:
    # Cells never hold a '|' of their own: a row that splits into more is malformed.
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def ledger_rows(text: str) -> list[Row]:
    """Every behaviour row of every table, with the references its test cell makes."""
    rows: list[Row] = []
    section = ""
    module = ""  # the module named last in this section
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("## "):
            section, module = line[3:].strip(), ""
            continue
        if not line.startswith("|"):
            continue
        cells = _cells(line)
        if cells[0] == "behaviour" or set(line) <= set("|-: "):
            continue  # the header, and the line under it
        assert len(cells) == 3, f"FIDELITY.md:{number}: {len(cells)} cells, not 3: {line[:80]}"
        row = Row(section, number, behaviour=cells[0], source=cells[1], tests=cells[2])
        if SAME_AS_BEFORE.match(row.tests) or SAME_TEST.match(row.tests):
            row.references = list(rows[-1].references) if rows else []
        for match in REFERENCE.finditer(row.tests):
            if match["module"]:
                module = match["module"]
                row.references.append(f"{module}::{match['named']}" if match["named"] else module)
            elif match["sibling"]:
                assert module, f"FIDELITY.md:{number}: ::{match['sibling']} follows no module"
                row.references.append(f"{module}::{match['sibling']}")
            else:
                row.references.append(match["bare"])
        rows.append(row)
    return rows


def _defined(path: Path) -> set[str]:
    return set(DEF.findall(path.read_text()))


def missing_references(rows: list[Row], repo: Path) -> list[str]:
    """Each reference whose module or function does not exist, with the row's line."""
    every_test: set[str] = set()
    for path in (repo / "tests").rglob("test_*.py"):
        every_test |= _defined(path)
    missing = []
    for row in rows:
        for reference in row.references:
            module, _, name = reference.partition("::")
            name = name.split("[")[0]  # a parametrized id names its function
            if not module.endswith(".py"):  # a bare test name
                found = reference.split("[")[0] in every_test
            else:
                paths = sorted(repo.glob(module))
                found = bool(paths) and (not name or any(name in _defined(p) for p in paths))
            if not found:
                missing.append(f"FIDELITY.md:{row.line} ({row.section}): {reference}")
    return missing


def source_kinds(rows: list[Row]) -> dict[str, list[Row]]:
    """Rows by the kind of source they give: Google's, the lab's own rule or a guess, none."""
    kinds: dict[str, list[Row]] = {"google": [], "lab rule or guess": [], "unsourced": []}
    previous = "unsourced"
    for row in rows:
        if SAME_AS_BEFORE.match(row.source):
            kind = previous
        elif LAB_RULE.search(row.source) or LAB_RULE.search(row.behaviour):
            kind = "lab rule or guess"
        elif GOOGLE_SOURCE.search(row.source):
            kind = "google"
        else:
            kind = "unsourced"
        kinds[kind].append(row)
        previous = kind
    return kinds


@pytest.fixture(scope="module")
def rows() -> list[Row]:
    return ledger_rows(LEDGER.read_text())


def test_every_test_the_ledger_names_exists(rows: list[Row]) -> None:
    missing = missing_references(rows, REPO)
    assert not missing, "the ledger names tests that do not exist:\n" + "\n".join(missing)
    named = sum(len(r.references) for r in rows)
    testless = [r.line for r in rows if not any(ref.startswith("test") for ref in r.references)]
    print(
        f"\nFIDELITY.md: {named} test references in {len(rows)} rows, all found;"
        f" rows naming no test: {testless}"
    )
    assert named > len(rows)


def test_every_row_gives_a_source_google_or_an_explicit_lab_rule(rows: list[Row]) -> None:
    kinds = source_kinds(rows)
    empty = [f"FIDELITY.md:{r.line}" for r in rows if not r.source]
    assert not empty, f"rows with no source: {empty}"
    unsourced = [f"FIDELITY.md:{r.line}: {r.source[:70]}" for r in kinds["unsourced"]]
    assert not unsourced, (
        "rows whose source is neither Google's nor marked 'lab rule' or 'guess':\n"
        + "\n".join(unsourced)
    )
    print(
        f"\nFIDELITY.md: {len(rows)} rows; {len(kinds['google'])} with a Google/client source,"
        f" {len(kinds['lab rule or guess'])} marked lab rule or guess"
    )
    assert len(kinds["google"]) + len(kinds["lab rule or guess"]) == len(rows)
    # A parser that lost a table would find a section with no rows.
    sections = re.findall(r"^## (.+)$", LEDGER.read_text(), re.MULTILINE)
    assert sorted({r.section for r in rows}) == sorted(sections)


def test_the_parser_resolves_each_form_of_reference() -> None:
    text = "\n".join(
        [
            "## One",
            "| behaviour | source | test |",
            "|---|---|---|",
            "| a | cloud.google.com/x | `tests/contract/test_dns.py::test_a`, `::test_b` |",
            "| b | lab rule | ::test_c; `test_d`; tests/flows/test_drill.py |",
            "## Two",
            "| behaviour | source | test |",
            "|---|---|---|",
            "| c | a guess | `lab/run/models.py::cold_start_delay` (no test yet) |",
            "| d | as above | same as above |",
        ]
    )
    parsed = ledger_rows(text)
    assert [r.references for r in parsed] == [
        ["tests/contract/test_dns.py::test_a", "tests/contract/test_dns.py::test_b"],
        ["tests/contract/test_dns.py::test_c", "test_d", "tests/flows/test_drill.py"],
        ["lab/run/models.py::cold_start_delay"],
        ["lab/run/models.py::cold_start_delay"],
    ]
    assert [r.section for r in parsed] == ["One", "One", "Two", "Two"]
    kinds = source_kinds(parsed)
    assert [len(kinds[k]) for k in ("google", "lab rule or guess", "unsourced")] == [1, 3, 0]


def test_a_missing_test_or_module_is_named_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_here.py").write_text("def test_here():\n    pass\n")
    text = "\n".join(
        [
            "## S",
            "| behaviour | source | test |",
            "|---|---|---|",
            "| a | lab rule | tests/test_here.py::test_here, ::test_gone |",
            "| b | lab rule | `test_here`, `test_renamed`, tests/test_absent.py |",
            "| c | as above | |",
        ]
    )
    assert missing_references(ledger_rows(text), tmp_path) == [
        "FIDELITY.md:4 (S): tests/test_here.py::test_gone",
        "FIDELITY.md:5 (S): test_renamed",
        "FIDELITY.md:5 (S): tests/test_absent.py",
    ]


def test_a_row_with_no_source_or_an_unmarked_one_is_unsourced() -> None:
    text = "\n".join(
        [
            "| behaviour | source | test |",
            "|---|---|---|",
            "| a | what we thought | `test_a` |",
            "| b | as above | `test_b` |",
            "| c | cloud.google.com/run/docs | `test_c` |",
            "| d |  | `test_d` |",
        ]
    )
    kinds = source_kinds(ledger_rows(text))
    assert [r.behaviour for r in kinds["unsourced"]] == ["a", "b", "d"]
    assert [r.behaviour for r in kinds["google"]] == ["c"]

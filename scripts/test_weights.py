"""Write tests/file_seconds.json, the seconds each lab test file took, from a JUnit XML
report of a whole ``make test`` lab run (``PYTEST_ADDOPTS=--junitxml=FILE make test``).

The lab suite is shared out by file (``--dist loadfile``) and bound by CPU on 2 cores, so
its length is set by the file that starts last: tests/conftest.py hands the heaviest
files out first. Run again when the suite's shape changes; a file missing from the table
counts as a median one.

Usage: ``python scripts/test_weights.py report.xml``.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

TABLE = Path(__file__).resolve().parents[1] / "tests" / "file_seconds.json"


def main(report: str) -> None:
    seconds: Counter[str] = Counter()
    for case in ET.parse(report).getroot().iter("testcase"):
        seconds[case.get("classname", "").replace(".", "/") + ".py"] += float(case.get("time") or 0)
    ordered = {name: round(s) for name, s in sorted(seconds.items(), key=lambda kv: -kv[1])}
    TABLE.write_text(json.dumps(ordered, indent=1) + "\n")
    print(f"{TABLE}: {len(ordered)} files, {sum(ordered.values())} s")


if __name__ == "__main__":
    main(sys.argv[1])

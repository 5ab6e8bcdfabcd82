"""A discovered topology as YAML, each guess a comment above the section it shaped."""

from __future__ import annotations

from datetime import datetime

import yaml

from lifeboat.discovery.build import Discovered


class _PlainDumper(yaml.SafeDumper):
    """Writes a value shared by two records twice, never as a YAML anchor and alias."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def render(discovered: Discovered, source: str, at: datetime) -> str:
    """The file's text: a header, then each section under its ``# GUESS:`` comments."""
    lines = [
        f"# Discovered by `lifeboat discover` from {source} at {at:%Y-%m-%d %H:%M} UTC.",
        "# Lines marked GUESS were inferred, not read: check them before the first run.",
        "",
    ]
    by_section: dict[str, list[str]] = {}
    for guess in discovered.guesses:
        by_section.setdefault(guess.section, []).append(guess.text)
    for key, value in discovered.data.items():
        lines += [f"# GUESS: {text}" for text in by_section.pop(key, [])]
        text = yaml.dump({key: value}, Dumper=_PlainDumper, sort_keys=False, width=100)
        lines.append(text.rstrip())
        lines.append("")
    # A guess about a section the file leaves out still gets said.
    lines += [f"# GUESS: {text}" for texts in by_section.values() for text in texts]
    return "\n".join(lines).rstrip() + "\n"

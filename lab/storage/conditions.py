"""Generation preconditions: the compare-and-swap primitive that leases are built on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from lab.storage.exceptions import ConditionNotMet, InvalidArgument, NotModified

# Query parameter -> field. The client spells one of them "ifMetaGenerationNotMatch" on
# multipart uploads, so both spellings are accepted.
_PARAMS = {
    "ifGenerationMatch": "if_generation_match",
    "ifGenerationNotMatch": "if_generation_not_match",
    "ifMetagenerationMatch": "if_metageneration_match",
    "ifMetagenerationNotMatch": "if_metageneration_not_match",
    "ifMetaGenerationNotMatch": "if_metageneration_not_match",
}
_SOURCE_PARAMS = {f"ifSource{k[2:]}": v for k, v in _PARAMS.items()}


def parse_int(value: str | None, what: str) -> int | None:
    """An int64 query parameter, or 400 if it is not a number."""
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidArgument(f"Invalid value for {what}: {value!r}") from None


@dataclass(frozen=True)
class Preconditions:
    """The ``if*Match`` parameters of one request; all unset means unconditional."""

    if_generation_match: int | None = None
    if_generation_not_match: int | None = None
    if_metageneration_match: int | None = None
    if_metageneration_not_match: int | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, str], *, source: bool = False) -> Preconditions:
        """Read the destination (or, with ``source``, the ``ifSource*``) parameters."""
        values: dict[str, int | None] = {}
        for param, field in (_SOURCE_PARAMS if source else _PARAMS).items():
            value = parse_int(query.get(param), param)
            if value is not None:
                values[field] = value
        return cls(**values)

    def check_write(self, generation: int | None, metageneration: int | None) -> None:
        """Raise 412 unless a write may replace the live object (None: it does not exist).

        A missing object counts as generation 0, so ``ifGenerationMatch=0`` means
        "create only" and a second writer racing for the same name loses.
        """
        live = generation or 0
        if self.if_generation_match is not None and self.if_generation_match != live:
            raise ConditionNotMet(f"ifGenerationMatch={self.if_generation_match}")
        if self.if_generation_not_match is not None and self.if_generation_not_match == live:
            raise ConditionNotMet(f"ifGenerationNotMatch={self.if_generation_not_match}")
        if self.if_metageneration_match is not None and (
            metageneration != self.if_metageneration_match
        ):
            raise ConditionNotMet(f"ifMetagenerationMatch={self.if_metageneration_match}")
        if (
            self.if_metageneration_not_match is not None
            and metageneration == self.if_metageneration_not_match
        ):
            raise ConditionNotMet(f"ifMetagenerationNotMatch={self.if_metageneration_not_match}")

    def check_read(self, generation: int, metageneration: int) -> None:
        """Like Google on reads of an existing object: 412 for *Match, 304 for *NotMatch."""
        if self.if_generation_match is not None and self.if_generation_match != generation:
            raise ConditionNotMet(f"ifGenerationMatch={self.if_generation_match}")
        if self.if_metageneration_match is not None and (
            self.if_metageneration_match != metageneration
        ):
            raise ConditionNotMet(f"ifMetagenerationMatch={self.if_metageneration_match}")
        if self.if_generation_not_match == generation or (
            self.if_metageneration_not_match == metageneration
        ):
            raise NotModified()


UNCONDITIONAL = Preconditions()

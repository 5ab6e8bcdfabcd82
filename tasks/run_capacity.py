"""Cloud Run capacity read from both levels: what is set, and what takes effect.

Pure logic over a ``run_v2.Service`` (no calls), so it is unit-tested without a lab.
"""

from __future__ import annotations

from google.cloud import run_v2
from pydantic import BaseModel

# Cloud Run's per-revision maximum when none is set (run/docs/configuring/max-instances).
DEFAULT_MAX_INSTANCES = 100


class Scaling(BaseModel):
    min: int
    max: int

    def describe(self) -> str:
        return f"{self.min}..{self.max}"


class Capacity(BaseModel):
    """A service's instance bounds at both levels, and the bounds that take effect.

    Service-level scaling applies at once and creates no revision; revision-level scaling
    (``template.scaling`` of the latest revision) applies when a revision is deployed.
    A service-level bound, when set (non-zero), takes effect; otherwise the revision's.
    A revision-level minimum can therefore hold instances warm that a service-level 0
    does not release: the effective figures say so.
    """

    service: Scaling
    revision: Scaling
    effective: Scaling

    @classmethod
    def of(cls, service: run_v2.Service) -> Capacity:
        level = Scaling(
            min=service.scaling.min_instance_count, max=service.scaling.max_instance_count
        )
        revision = Scaling(
            min=service.template.scaling.min_instance_count,
            max=service.template.scaling.max_instance_count,
        )
        effective = Scaling(
            min=level.min or revision.min,
            max=level.max or revision.max or DEFAULT_MAX_INSTANCES,
        )
        return cls(service=level, revision=revision, effective=effective)

    def describe(self) -> str:
        """``effective (service-level a..b, revision c..d)``; ``-`` marks a bound not set."""

        def bound(value: int) -> str:
            return str(value) if value else "-"

        return (
            f"{self.effective.describe()} (service-level {bound(self.service.min)}.."
            f"{bound(self.service.max)}, revision {self.revision.min}.."
            f"{bound(self.revision.max)})"
        )

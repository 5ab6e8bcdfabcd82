"""Cloud Monitoring wire errors, in the shape Monitoring replies with.

Monitoring v3 is a one-platform API, as Secret Manager is: its errors carry the canonical
``status`` name and no ``errors`` list (cloud.google.com/monitoring/api/ref_v3/rest,
google.rpc.Status).

ApiError (lab.core.errors)
├── InvalidArgument  400 INVALID_ARGUMENT  a filter, interval or aggregation Google refuses
└── MetricNotFound   404 NOT_FOUND         a metric type the project has no descriptor for
"""

from __future__ import annotations

from lab.core.errors import OnePlatformError


class MonitoringError(OnePlatformError):
    """This API's errors."""


class InvalidArgument(MonitoringError):
    code = 400
    status_name = "INVALID_ARGUMENT"


class MetricNotFound(MonitoringError):
    code = 404
    status_name = "NOT_FOUND"

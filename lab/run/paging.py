"""Page tokens for Cloud Run list calls: the lab's one paging scheme (``lab.core.paging``)."""

from lab.core.paging import paginate

__all__ = ["paginate"]

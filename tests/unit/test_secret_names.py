"""Secret Manager names, parsed once (lifeboat/secret_names.py)."""

from __future__ import annotations

import pytest

from lifeboat.secret_names import SecretName
from tasks.cloud_run_secrets import split_version
from tasks.errors import PermanentError


def test_a_secret_and_a_version_name_are_parsed_and_anything_else_is_not() -> None:
    assert SecretName.parse("projects/p/secrets/s") == SecretName("p", "s")
    version = SecretName.parse("projects/123/secrets/s/versions/7")
    assert version == SecretName("123", "s", "7")
    assert version.secret_resource == "projects/123/secrets/s"
    assert SecretName.parse("projects/p/secrets/s/versions/latest") == SecretName(
        "p", "s", "latest"
    )
    for other in (
        "s",
        "projects/p/topics/s",
        "projects/p/secrets/s/versions",
        "x/projects/p/secrets/s",
    ):
        assert SecretName.parse(other) is None, other


def test_a_version_to_roll_for_must_be_numbered() -> None:
    assert split_version("projects/123/secrets/s/versions/7") == ("123", "s", "7")
    for bad in ("projects/123/secrets/s/versions/latest", "projects/123/secrets/s"):
        with pytest.raises(PermanentError):
            split_version(bad)

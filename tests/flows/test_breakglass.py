"""Break-glass: `lifeboat failover` with the Prefect server unreachable still fails over
and still writes its record to GCS."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from lifeboat.secrets import read_secret
from tests.flows.lab_checks import (
    PRIMARY,
    REPLICA,
    SECONDARY,
    TOPOLOGY,
    app_secret_value,
    front_region,
    incident,
    instance_address,
    read_object,
)
from tests.labharness import REPO, Lab


def test_breakglass_failover_without_the_prefect_server(fresh_lab: Lab, tmp_path) -> None:
    fresh_lab.outage(PRIMARY.name, True)
    inc = incident("GLASS")
    env = dict(os.environ)
    env.update(
        PREFECT_API_URL="http://127.0.0.1:9/api",  # nothing listens there: the server is "down"
        PREFECT_HOME=str(tmp_path / "prefect"),
        # Secrets come from the environment when no Secret block can be read.
        LIFEBOAT_DATABASE_PASSWORD=read_secret("lifeboat-database-password"),
        LIFEBOAT_SLACK_WEBHOOK=read_secret("lifeboat-slack-webhook"),
        LIFEBOAT_EMAIL_WEBHOOK=read_secret("lifeboat-email-webhook"),
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "commands.cli",
            "failover",
            "--env",
            "lab",
            "--reason",
            "prefect is down too",
            "--incident-id",
            inc,
            "--operator",
            "sre-on-call",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "does not answer: break-glass" in result.stdout
    assert "outcome: completed" in result.stdout
    assert front_region(fresh_lab) == SECONDARY.name
    record = json.loads(
        read_object(fresh_lab, TOPOLOGY.backups.records_bucket, f"failover/{inc}.json")
    )
    assert record["outcome"] == "completed"
    assert record["trigger"] == "local (break-glass)"
    assert record["operator"] == "sre-on-call"
    assert sorted(w["name"] for w in fresh_lab.webhooks()) == ["email", "slack"]
    # The apps' secret in Secret Manager (what Cloud Run reads), not a local Prefect
    # server's block, now names the promoted instance; its value never reached the output.
    url = app_secret_value(fresh_lab)
    assert f"@{instance_address(fresh_lab, REPLICA.project, REPLICA.instance)}:" in url
    assert url not in result.stdout + result.stderr

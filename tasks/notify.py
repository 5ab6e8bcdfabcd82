"""Notifications: Slack and e-mail webhooks, their URLs read from secrets."""

from __future__ import annotations

import httpx
from prefect import get_run_logger
from pydantic import BaseModel

from lifeboat import runtime
from lifeboat.secrets import SecretMissing, read_secret
from tasks.errors import PermanentError, TransientError
from tasks.retrying import cloud_task


class Delivery(BaseModel):
    channel: str
    delivered: bool
    detail: str


def _payload(channel: str, title: str, text: str) -> dict[str, str]:
    if channel == "slack":
        return {"text": f"*{title}*\n{text}"}
    return {"subject": title, "body": text}


@cloud_task(timeout_seconds=30, retries=2, task_run_name="notify-{channel}")
def notify_webhook(environment: str, channel: str, title: str, text: str) -> Delivery:
    """POST one notification; the webhook URL comes from a secret and is never logged.

    Idempotent: no. A retried POST can deliver twice, which beats not delivering.
    """
    notifications = runtime.topology(environment).notifications
    secret = (
        notifications.slack_webhook_secret
        if channel == "slack"
        else notifications.email_webhook_secret
    )
    if secret is None:
        return Delivery(channel=channel, delivered=False, detail="not configured")
    try:
        url = read_secret(secret)
    except SecretMissing as exc:
        return Delivery(channel=channel, delivered=False, detail=str(exc))
    try:
        response = httpx.post(url, json=_payload(channel, title, text), timeout=10)
    except httpx.TransportError as exc:
        raise TransientError(f"notify {channel}: {type(exc).__name__}") from None
    if response.status_code == 429 or response.status_code >= 500:
        raise TransientError(f"notify {channel}: HTTP {response.status_code}")
    if response.status_code >= 400:
        raise PermanentError(f"notify {channel}: HTTP {response.status_code}")
    get_run_logger().info("notified %s (HTTP %s)", channel, response.status_code)
    return Delivery(channel=channel, delivered=True, detail=f"HTTP {response.status_code}")


def notify_all(environment: str, title: str, text: str) -> list[Delivery]:
    """Send to every channel; a failed notification is reported, never raised."""
    futures = [
        notify_webhook.submit(environment, channel, title, text) for channel in ("slack", "email")
    ]
    deliveries = []
    for channel, future in zip(("slack", "email"), futures, strict=True):
        try:
            deliveries.append(future.result())
        except Exception as exc:
            deliveries.append(Delivery(channel=channel, delivered=False, detail=str(exc)[:300]))
    return deliveries

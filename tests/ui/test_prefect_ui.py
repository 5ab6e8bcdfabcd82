"""Operators, from the Prefect UI: launch failover/lab, approve its pause, see it complete.

Drives the lab's real Prefect UI in headless Chromium (Debian's, via Playwright). The
primary is healthy, so the failover pauses for approval, and the approval is given through
the UI's Resume form, the way an operator would.

Prefect 3.8 serves two UIs: the new one under /v2, which the printed URL opens by default,
and the classic one at the root paths (/deployments/...), one click away ("Switch to V1
UI"). Both are tested, since an operator may be on either.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from lab.prefect_api import PrefectApi
from tests.flows.lab_checks import TOPOLOGY, read_object
from tests.labharness import Lab

CHROMIUM = Path("/usr/bin/chromium")
# reference/prefect.md: what Debian's Chromium needs to run headless in this sandbox.
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Generous but bounded: the worker polls every second, a flow process starts in ~5 s on
# 2 cores, and the lab runs at time scale 0.01. A healthy run needs well under half.
UI_TIMEOUT_MS = 30_000
PAUSE_TIMEOUT_MS = 90_000
COMPLETE_TIMEOUT_MS = 90_000
Role = Literal["textbox", "switch"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's Chromium at /usr/bin/chromium (scripts/setup.sh installs it "
        "as root; else `apt-get install chromium`)",
    ),
]


@dataclass(frozen=True)
class PrefectUi:
    """Where the two UIs differ: path prefix, how a form field is found, the Resume form."""

    name: str
    prefix: str

    @property
    def classic(self) -> bool:
        return self.name == "v1"

    def field(self, scope: Page | Locator, label: str, role: Role) -> Locator:
        page = scope if isinstance(scope, Page) else scope.page
        if self.classic:
            # The classic UI's <label for=...> points at no input, so inputs have no
            # accessible name: find the labelled field block by its label text instead.
            block = scope.locator(".p-label").filter(has=page.get_by_text(label, exact=True))
            return block.get_by_role(role)
        return scope.get_by_role(role, name=label, exact=True)

    def fill_incident(self, page: Page, incident_id: str) -> None:
        # `str | None` renders as a choice between the two types; pick `str` to get a box.
        if self.classic:
            block = page.locator(".p-label").filter(
                has=page.get_by_text("incident_id (Optional)", exact=True)
            )
            block.get_by_role("button", name="str", exact=True).click()
            block.get_by_role("textbox").fill(incident_id)
        else:
            page.get_by_role("tab", name="str", exact=True).click()
            page.get_by_role("tabpanel", name="str").get_by_role("textbox").fill(incident_id)

    def open_resume(self, page: Page) -> Locator:
        if self.classic:
            page.get_by_role("button", name="Resume", exact=True).click()
            return page.get_by_role("dialog")
        # The new UI keeps Resume in the run's action menu, the first "Open menu" button.
        page.get_by_role("button", name="Open menu").first.click()
        page.get_by_role("menuitem", name="Resume", exact=True).click()
        return page.get_by_role("dialog", name="Resume Flow Run")

    def submit_resume(self, dialog: Locator) -> None:
        label = "Submit" if self.classic else "Resume"
        dialog.get_by_role("button", name=label, exact=True).click()

    def state_badge(self, page: Page, state: str) -> Locator:
        header = page.get_by_role("banner") if self.classic else page.get_by_role("main")
        return header.get_by_text(state, exact=True).first


UIS = [PrefectUi("v2", "/v2"), PrefectUi("v1", "")]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        # Never `playwright install`: it downloads a browser build, which fails here.
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser, fresh_lab: Lab, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(UI_TIMEOUT_MS)
    opened = context.new_page()
    try:
        yield opened
    finally:
        report = getattr(request.node, "rep_call", None)  # set in tests/ui/conftest.py
        if report is None or report.failed:
            _screenshot(opened, fresh_lab.root, request.node.name)
        context.close()


def _screenshot(page: Page, lab_root: Path, test_name: str) -> None:
    folder = lab_root / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name)
    try:
        page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
        (folder / f"{name}.url").write_text(page.url + "\n")
    except Exception as exc:  # a dead page must not hide the test's own failure
        print(f"screenshot failed: {exc}")
    else:
        print(f"screenshot: {folder / f'{name}.png'}")


def _run_for_incident(api: PrefectApi, deployment_id: str, incident_id: str) -> str:
    """The id of the deployment's flow run whose `incident_id` parameter is ``incident_id``."""
    deadline = time.monotonic() + UI_TIMEOUT_MS / 1000
    body = {
        "deployments": {"id": {"any_": [deployment_id]}},
        "sort": "EXPECTED_START_TIME_DESC",
        "limit": 50,
    }
    while True:
        runs = api.http.post("/flow_runs/filter", json=body).raise_for_status().json()
        found = [r["id"] for r in runs if r["parameters"].get("incident_id") == incident_id]
        if found:
            assert len(found) == 1, f"one Submit made {len(found)} runs"
            return str(found[0])
        assert time.monotonic() < deadline, f"no flow run for incident {incident_id}"
        time.sleep(0.25)


@pytest.mark.parametrize("ui", UIS, ids=[u.name for u in UIS])
def test_operator_launches_and_approves_failover_in_the_ui(
    ui: PrefectUi, page: Page, fresh_lab: Lab, api: PrefectApi
) -> None:
    base = str(fresh_lab.endpoints["prefect_ui_url"])
    deployment_id = api.deployment_id("failover/lab")
    incident_id = f"UI-{uuid.uuid4().hex[:8]}"
    run_name = f"ui-{ui.name}-{incident_id.lower()}"
    reason = f"UI drill ({ui.name}): planned failover, primary healthy"
    approver = f"ui-operator-{ui.name}"

    # (a) The printed URL serves the UI.
    page.goto(base)
    expect(page.get_by_text("Deployments", exact=True).first).to_be_visible()

    # (b) The deployment page's Run menu → "Custom run": the parameter form.
    page.goto(f"{base}{ui.prefix}/deployments/deployment/{deployment_id}")
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("Custom run", exact=True).click()
    page.wait_for_url(re.compile(rf"/deployments/deployment/{deployment_id}/run"))
    # The form is built from the API's data; a UI pointed at the wrong API (it once asked
    # port 4200) says so in a toast by now.
    expect(ui.field(page, "reason", "textbox")).to_be_visible()
    expect(page.get_by_text("Can't connect to Server API")).to_have_count(0)
    ui.field(page, "Run Name", "textbox").fill(run_name)
    ui.field(page, "reason", "textbox").fill(reason)
    ui.fill_incident(page, incident_id)
    page.get_by_role("button", name="Submit", exact=True).click()

    # Find the new run through the API by its incident id, then open its page. (Not the
    # toast's "View run": the classic UI moves to the deployment page right after Submit
    # and re-renders the toast, so that button is often detached mid-click.)
    run_id = _run_for_incident(api, deployment_id, incident_id)
    page.goto(f"{base}{ui.prefix}/runs/flow-run/{run_id}")
    expect(page.get_by_text(run_name, exact=True).first).to_be_visible()
    launched = api.flow_run(run_id)
    assert launched["name"] == run_name
    assert launched["parameters"]["reason"] == reason

    # (c) No outage, so the flow asks for approval; the run page shows it Paused.
    expect(ui.state_badge(page, "Paused")).to_be_visible(timeout=PAUSE_TIMEOUT_MS)
    dialog = ui.open_resume(page)
    # The form carries the flow's markdown: the operator sees why and what will change.
    # The form's fields come first and its description a moment later: a loaded machine
    # needs more than expect's default 5 s for it.
    expect(dialog.get_by_text("Approval is needed because:")).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(dialog.get_by_text(incident_id, exact=True)).to_be_visible(timeout=UI_TIMEOUT_MS)
    ui.field(dialog, "Approved (Optional)", "switch").click()
    ui.field(dialog, "Approver", "textbox").fill(approver)
    ui.field(dialog, "Note (Optional)", "textbox").fill("approved in the Prefect UI")
    ui.submit_resume(dialog)

    # (d) The run completes: the UI shows it, the API agrees, the record names the approver.
    expect(ui.state_badge(page, "Completed")).to_be_visible(timeout=COMPLETE_TIMEOUT_MS)
    final = api.wait(run_id, timeout=30)
    assert final["state"]["type"] == "COMPLETED", final["state"]
    record = json.loads(
        read_object(fresh_lab, TOPOLOGY.backups.records_bucket, f"failover/{incident_id}.json")
    )
    assert record["outcome"] == "completed"
    assert record["approval"]["approver"] == approver
    assert record["approval"]["note"] == "approved in the Prefect UI"

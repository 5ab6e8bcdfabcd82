"""Fault matrix (issue 15 §3): every distinct cloud call a switch makes x {429, 500, 503,
timeout, 403, 404}; each cell must be retried or fail fast, as the product classifies it.

A baseline run on a fresh lab gives the calls: the lab's request log, each path with its
resource ids generalised (services, instances, operations, DNS changes, objects), so one
call is one row however many services it touches. Projects, regions, buckets, zones and
secrets stay: they say which side of the switch the call is on. Left out: the health
probes of the region apps and the front door (their failures are what the verification
measures, not errors to classify) and the notification webhooks (a failed notification
never fails a run, by design). The lease and the run record in Cloud Storage stay in: they
are Google calls, and a bucket the run cannot write is a failure an operator must see.

Each cell runs on a reset lab with one fault rule (``/_lab/faults``):
- 429, 500, 503: the first 2 matching calls (transient: the run must retry and complete,
  and the request log must show the call made again);
- timeout: the first matching call is held ``call_timeout_s`` + 3 s (the product's own
  per-call deadline, ``endpoints.call_timeout_s``), so the client gives up before the lab
  answers; the repeat is checked to come before the held call's reply;
- 403, 404: every matching call (permanent: the run must fail within ``PROMPT_S`` of the
  first hit, without calling that resource again, with a message naming the step and the
  resource);
- 403 rateLimitExceeded, on Compute only: Compute throttles with it, and the product
  classifies it as transient (tasks/errors.py, gcp-clients.md).

The expected outcome of a cell is the product's own classification
(``tasks.errors.is_transient`` of the exception the client raises), except where the
product handles the error by design: the primary region's Cloud Run calls during a
failover are best effort (the README's failover table: "the primary's are tried once, and a
region that does not answer is recorded"); google-cloud-storage's own background read of a
bucket's metadata (for its trace spans; it ignores a failure) must not matter; and a 404 on
a read of the lease means "no lease" (tasks/storage.py), so either ending is right there
if nothing is retried.

Figures (``name=value``, last): fault_cells (cells whose fault fired), fault_cells_wrong,
fault_cells_not_reached (the call was not made in that run: an earlier step differs),
fault_matrix_s (wall time); and a table before them.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from google.api_core import exceptions as gexc

from bench.labctl import BenchLab, bench_lab, figure
from lab.prefect_stack import TASK_RUN_FLUSH_S
from lifeboat import runtime
from lifeboat.topology import API_NAMES
from reliability.crash import fresh_lab
from tasks.errors import is_transient

BASE_PORT = int(os.environ.get("LIFEBOAT_RELIABILITY_FAULTS_PORT", "28780"))
PG_PREFIX = os.environ.get("LIFEBOAT_RELIABILITY_FAULTS_PG_PREFIX", "127.0.28.")
# The lab's test clock: a failover takes about 15 s, so the whole matrix fits in an hour.
TIME_SCALE = 0.01
# The product's first retry delay (then 2x, 4x...); the lab's tests shrink it the same way.
RETRY_BACKOFF_S = "0.2"
# A fail-fast fault must end the run within this many seconds of its first hit (the run
# still waits for a promotion already started, ~2 s at the lab's clock, and writes its record).
PROMPT_S = 60.0
# A cell whose run has not ended by then hangs.
CELL_TIMEOUT_S = 300.0

# The APIs whose calls are cloud calls (the request log's ``api``): every Google API
# Lifeboat calls.
CLOUD_APIS = API_NAMES

# Collections whose member ids are generalised: one row per kind of call, not per resource.
_ID_AFTER = ("services", "instances", "operations", "changes", "revisions")


@dataclass(frozen=True, order=True)
class Call:
    """One distinct cloud call: API, verb and path pattern (ids as ``{name}``)."""

    api: str
    method: str
    pattern: str

    @property
    def key(self) -> str:
        return f"{self.api} {self.method} {self.pattern}"

    def regex(self) -> str:
        """The lab's fault rule path: the pattern, each ``{id}`` one or more characters."""
        parts = re.split(r"(\{[a-z]+\})", self.pattern)
        body = "".join(
            ("[^/]+" if p != "{object}" else ".+") if p.startswith("{") else re.escape(p)
            for p in parts
        )
        return f"^{body}$"

    def matches(self, entry: dict[str, Any]) -> bool:
        return (
            entry["api"] == self.api
            and entry["method"] == self.method
            and re.match(self.regex(), entry["path"]) is not None
        )


def generalise(path: str) -> str:
    """The path with resource ids as ``{name}``: ``.../services/auth-service`` becomes
    ``.../services/{service}``, a Cloud Storage object name ``.../o/{object}``. A custom
    verb (``:addVersion``) and an alias (``versions/latest``) stay."""
    segments = path.split("/")
    out: list[str] = []
    for i, seg in enumerate(segments):
        before = segments[i - 1] if i else ""
        if before == "o" and i >= 2 and segments[i - 2] not in ("b", ""):
            out.append("{object}")
            break  # an object name may hold slashes: the rest is the name
        if before in _ID_AFTER and seg:
            _, colon, verb = seg.partition(":")
            placeholder = "{" + before.removesuffix("s") + "}"
            out.append(placeholder + (colon + verb if colon else ""))
            continue
        out.append(seg)
    return "/".join(out)


def is_cloud_call(entry: dict[str, Any]) -> bool:
    return entry["api"] in CLOUD_APIS


def distinct_calls(entries: Iterable[dict[str, Any]]) -> list[Call]:
    """The distinct cloud calls in a request log, in the order first made."""
    seen: dict[Call, None] = {}
    for entry in entries:
        if is_cloud_call(entry):
            seen.setdefault(Call(entry["api"], entry["method"], generalise(entry["path"])))
    return list(seen)


@dataclass(frozen=True)
class Fault:
    """One column: what the lab does to the matching calls, and how many it hits."""

    name: str
    status: int | None = None
    reason: str | None = None
    timeout: bool = False
    count: int | None = None  # None: every matching call
    apis: tuple[str, ...] = CLOUD_APIS

    def rule(self, call: Call, call_timeout_s: float) -> dict[str, Any]:
        body: dict[str, Any] = {"api": call.api, "method": call.method, "path": call.regex()}
        if self.status is not None:
            body["status"] = self.status
        if self.reason is not None:
            body["reason"] = self.reason
        if self.timeout:
            body["latency_s"] = held_seconds(call_timeout_s)
        if self.count is not None:
            body["count"] = self.count
        return body


HOLD_MARGIN_S = 3.0


def held_seconds(call_timeout_s: float) -> float:
    """How long a timeout fault holds a call: past the client's deadline, by a margin."""
    return call_timeout_s + HOLD_MARGIN_S


FAULTS: dict[str, Fault] = {
    "429": Fault("429", status=429, count=2),
    "500": Fault("500", status=500, count=2),
    "503": Fault("503", status=503, count=2),
    "timeout": Fault("timeout", timeout=True, count=1),
    "403": Fault("403", status=403),
    "404": Fault("404", status=404),
    "403-rate": Fault(
        "403-rate", status=403, reason="rateLimitExceeded", count=2, apis=("compute",)
    ),
}

RETRIED, FAILED_FAST, TOLERATED, EITHER = "retried", "failed-fast", "tolerated", "either"


def product_says_transient(fault: Fault) -> bool:
    """The product's own classification of the error the client raises for ``fault``."""
    if fault.timeout:
        return is_transient(TimeoutError("the client's deadline passed"))
    assert fault.status is not None
    errors = [{"reason": fault.reason}] if fault.reason else []
    # The exception google-api-core raises for that reply (its own mapping, untyped).
    exc = gexc.from_http_status(fault.status, "injected", errors=errors)  # type: ignore[no-untyped-call]
    return is_transient(exc)


def best_effort(call: Call, flow: str, primary_project: str, primary_region: str) -> bool:
    """A call whose failure the flow records and goes on: during a failover, the primary
    region's Cloud Run services ("tried once, a region that does not answer is recorded")."""
    return (
        flow == "failover"
        and call.api == "run"
        and f"/projects/{primary_project}/locations/{primary_region}/" in call.pattern
    )


def absent_means_gone(call: Call, fault: Fault) -> bool:
    """A 404 the product may read as "not there" by design: a Cloud Storage object read or
    deletion (the lease, read before it is written: tasks/storage.py; an export's copy:
    tasks/cloud_sql.py)."""
    return (
        fault.status == 404
        and call.api == "storage"
        and call.method in ("GET", "DELETE")
        and "{object}" in call.pattern
    )


def library_background(call: Call) -> bool:
    """A call the client library makes on its own, whose failure it ignores:
    google-cloud-storage 3.x reads a bucket's metadata (``GET /storage/v1/b/<bucket>``) on a
    thread of its own, with its own 10 s timeout, to label its trace spans
    (``BucketMetadataCache._fetch_background``). Lifeboat's switches never read a bucket."""
    return call.api == "storage" and re.fullmatch(r"/storage/v1/b/[^/]+", call.pattern) is not None


def expected(call: Call, fault: Fault, flow: str, primary: tuple[str, str]) -> str:
    """What a cell must do: retried, failed-fast, tolerated (the run completes) or either."""
    if best_effort(call, flow, *primary) or library_background(call):
        return TOLERATED
    if product_says_transient(fault):
        return RETRIED
    if absent_means_gone(call, fault):
        return EITHER
    return FAILED_FAST


@dataclass
class Observation:
    """What one cell's run did, from the flow run and the lab's request log."""

    ended: bool
    state: str
    message: str
    fired: bool  # the fault hit at least one call
    repeated: bool  # the call was made again, unfaulted, after the first hit
    repeated_before_reply: bool  # ... before the held call's reply (timeouts)
    # Evidence that a permanent error was tried again: task runs that ran more than once,
    # and faulted calls made more often than the whole baseline run made them.
    retries: list[str]
    fault_to_end_s: float
    tasks_rerun: list[str] = field(default_factory=list)  # task runs that ran more than once
    polls: bool = False  # the call reads a long-running operation or a DNS change
    resource_ids: list[str] = field(default_factory=list)
    duplicate_writes: list[str] = field(default_factory=list)
    # Other calls answered between the client's deadline and the held call's reply: the
    # client gave up and went on (a write with no request id is read for, not resent).
    read_during_hold: bool = False
    write: bool = False  # the faulted call is a write (the lab's log says)


# Path segments that are collection or API words, never the resource an operator looks for.
_NOT_IDS = {
    "v1",
    "v2",
    "dns",
    "sql",
    "compute",
    "storage",
    "upload",
    "download",
    "projects",
    "locations",
    "services",
    "instances",
    "operations",
    "managedZones",
    "rrsets",
    "changes",
    "global",
    "urlMaps",
    "secrets",
    "versions",
    "b",
    "o",
    "latest",
}


# Query parameters that name the resource a call is about (a list filtered by instance, an
# upload's object name).
_NAMING_PARAMETERS = ("instance", "name")


def resource_ids(path: str, project_and_region: Iterable[str], query: str = "") -> list[str]:
    """The names in a call an error message could name: the path's segments but API words,
    projects and regions (which name no resource by themselves), and the query's
    ``instance`` or ``name``."""
    skip = _NOT_IDS | set(project_and_region)
    ids = []
    for seg in path.split("/"):
        name = seg.partition(":")[0]
        if name and name not in skip and not name.isdigit():
            ids.append(name)
    ids += [v for k, v in parse_qsl(query) if k in _NAMING_PARAMETERS and v]
    return ids


_STEP_NAMED = re.compile(r"\b[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*(?: failed on |: )")


# The product's own form (tasks/errors.py ``classify``): "<step> failed on <resource>: ...".
_STEP_FAILED_ON = re.compile(r"\b[a-z][a-z0-9]*(?:-[a-z0-9]+)* failed on \S+")


def names_step_and_resource(message: str, ids: Iterable[str], polls: bool = False) -> bool:
    """Whether a failure message names a step (``step failed on ...`` or ``step: ...``)
    and one of the resources of the faulted call."""
    ids = list(ids)
    if polls or not ids:
        # An operation's or a DNS change's id means nothing to an operator, and a create
        # (a POST to a collection) names its resource in the body, not the path: the step
        # names the resource it works on (the instance being promoted, or created).
        return _STEP_FAILED_ON.search(message) is not None
    return _STEP_NAMED.search(message) is not None and any(i in message for i in ids)


def judge(want: str, seen: Observation, fault: Fault) -> str:
    """The cell's verdict: the outcome when right, else ``WRONG:<reasons>``."""
    if not seen.fired:
        return "not-reached"
    if not seen.ended:
        return "WRONG:hang"
    completed, failed = seen.state == "COMPLETED", seen.state == "FAILED"
    wrong: list[str] = []
    if want == RETRIED:
        if not completed:
            wrong.append(f"retryable fault ended the run {seen.state}")
        # A step retried after the error may take another path (a promotion's retry reads
        # the instance, already promoted, instead of polling the operation again).
        # A write with no request id (Secret Manager's addVersion) is not resent after a
        # timeout: the client reads until the held one lands, then adopts it ("adopted").
        adopted = _adopted(seen, fault)
        gave_up = seen.repeated_before_reply or bool(seen.tasks_rerun) or adopted
        if fault.timeout and not gave_up:
            wrong.append("the client waited for the held reply: no deadline under the hold")
        elif not (seen.repeated or seen.tasks_rerun or adopted):
            wrong.append("call not made again, no step retried")
    elif want == TOLERATED:
        if not completed:
            wrong.append(f"best-effort call's fault ended the run {seen.state}")
    else:
        if want == FAILED_FAST and not failed:
            wrong.append(f"fail-fast fault ended the run {seen.state}")
        if seen.retries:
            wrong.append(f"fail-fast error retried ({', '.join(seen.retries)})")
        if failed and seen.fault_to_end_s > PROMPT_S:
            wrong.append(f"failed after {seen.fault_to_end_s:.0f} s")
        named = names_step_and_resource(seen.message, seen.resource_ids, seen.polls)
        if failed and not named:
            wrong.append("message names no step and resource")
    if seen.duplicate_writes:
        wrong.append(f"repeated writes {seen.duplicate_writes}")
    if wrong:
        return "WRONG:" + "; ".join(wrong)
    if want == EITHER:
        return "tolerated" if completed else FAILED_FAST
    if want == RETRIED and _adopted(seen, fault):
        return "adopted"
    return want


def _adopted(seen: Observation, fault: Fault) -> bool:
    """A held call the client gave up on at its deadline (it read something else while
    the call was held) and did not send again: for a write, no more writes than the
    baseline (a failback's second create, of another instance, has the same path); for a
    read, the same call not made again."""
    resent = bool(seen.duplicate_writes) if seen.write else seen.repeated
    return fault.timeout and seen.read_during_hold and not resent


def render_table(calls: list[Call], faults: list[str], verdicts: dict[tuple[str, str], str]) -> str:
    """A call x fault table, one line per call (``-`` where the cell was not run)."""
    width = max((len(c.key) for c in calls), default=4)
    cols = {f: max(len(f), *(len(verdicts.get((c.key, f), "-")) for c in calls)) for f in faults}
    lines = [" | ".join(["call".ljust(width), *(f.ljust(cols[f]) for f in faults)])]
    lines.append("-|-".join(["-" * width, *("-" * cols[f] for f in faults)]))
    for c in calls:
        cells = (verdicts.get((c.key, f), "-").ljust(cols[f]) for f in faults)
        lines.append(" | ".join([c.key.ljust(width), *cells]))
    return "\n".join(lines)


# ---- against the lab -------------------------------------------------------------------


def _launch(lab: BenchLab, flow: str, incident: str) -> str:
    parameters: dict[str, Any] = {"reason": "fault matrix", "incident_id": incident}
    if flow == "failover":
        parameters["approve"] = True  # unattended: no pause before the lock
    return str(lab.api.launch(f"{flow}/lab", parameters)["id"])


def _wait(lab: BenchLab, run_id: str, timeout: float = CELL_TIMEOUT_S) -> dict[str, Any] | None:
    try:
        return lab.api.wait(run_id, timeout=timeout)
    except AssertionError:
        return None


def _writes(entries: Iterable[dict[str, Any]]) -> Counter[str]:
    """Successful writes per call, a repeat of one ``requestId`` counted once: Compute
    answers it with the first request's operation, so its effect happens once (the CDN
    purge sends one stable per incident and path; the crash sweep counts purges so too)."""
    counts: Counter[str] = Counter()
    requests_seen: set[tuple[str, str]] = set()
    for e in entries:
        if not (e["write"] and e["status"] < 400 and is_cloud_call(e)):
            continue
        if "dr-records" in e["path"]:
            continue
        key = f"{e['api']} {e['method']} {e['path']}"
        request_id = dict(parse_qsl(e.get("query") or "")).get("requestId")
        if request_id:
            if (key, request_id) in requests_seen:
                continue
            requests_seen.add((key, request_id))
        counts[key] += 1
    return counts


# The incident ids this sweep launches (``_launch``): a path that holds one (the failback's
# export object) is the same call in the baseline and in a cell.
_INCIDENT = re.compile(r"FAULTS-[a-z]+-(?:BASE-)?\d+")


def _exact(entries: Iterable[dict[str, Any]]) -> Counter[str]:
    """How often each exact call was made, the run's incident id left out of its path."""
    return Counter(
        f"{e['method']} {_INCIDENT.sub('FAULTS-<incident>', e['path'])}"
        for e in entries
        if is_cloud_call(e)
    )


@dataclass(frozen=True)
class Baseline:
    """A whole run with no fault: its distinct calls, its writes, how often each exact
    call was made (two concurrent steps may read one resource: that is no retry)."""

    calls: list[Call]
    writes: Counter[str]
    exact: Counter[str]


def baseline(lab: BenchLab, flow: str) -> Baseline:
    fresh_lab(lab, flow)
    since = lab.last_seq()
    # An incident of its own: a second baseline under the same id would resume the first
    # (its steps are cached by incident) on a lab reset since, and switch nothing.
    # No fault here, so no hang to catch: a loaded machine may take longer than a cell.
    final = _wait(
        lab, _launch(lab, flow, f"FAULTS-{flow}-BASE-{time.time_ns()}"), 3 * CELL_TIMEOUT_S
    )
    if final is None or final["state"]["type"] != "COMPLETED":
        raise RuntimeError(f"the baseline {flow} did not complete: {final and final['state']}")
    entries = lab.requests(since=since)
    return Baseline(distinct_calls(entries), _writes(entries), _exact(entries))


def retry_evidence(
    hits: list[dict[str, Any]], base_exact: Counter[str], task_runs: list[dict[str, Any]]
) -> list[str]:
    """What shows a permanent error tried again: a task run that ran more than once, or a
    faulted call made more often than the whole baseline run made it (a client's own retry)."""
    tried = [f"task {t['name']} ran {t['run_count']}x" for t in task_runs if t["run_count"] > 1]
    faulted = _exact(e for e in hits if e["status"] >= 400)
    over = [f"{k} hit {n}x" for k, n in faulted.items() if n > max(1, base_exact[k])]
    return sorted(tried) + sorted(over)


def observe(
    call: Call,
    final: dict[str, Any] | None,
    entries: list[dict[str, Any]],
    base: Baseline,
    task_runs: list[dict[str, Any]],
    skip_ids: Iterable[str],
) -> Observation:
    mine = [e for e in entries if call.matches(e)]
    hits = [e for e in mine if e["injected"]]
    first = hits[0] if hits else None
    # The faulted call made again: the same method and path. The pattern's other calls (a
    # failback deletes two instances, exports two databases) are other resources.
    again = [
        e
        for e in mine
        if first is not None
        and not e["injected"]
        and (e["method"], e["path"]) == (first["method"], first["path"])
    ]
    later = [e for e in again if first is not None and e["seq"] > first["seq"]]
    # A held call is logged when the lab answers it: a repeat logged earlier came from a
    # client that had given up.
    before_reply = any(e["time"] < first["time"] for e in again) if first else False
    end = final.get("end_time") if final else None
    fault_to_end = 0.0
    if first is not None and end:
        fault_to_end = datetime.fromisoformat(end).timestamp() - first["time"]
    repeats = _writes(entries) - base.writes
    read_during_hold = first is not None and any(
        first["time"] - HOLD_MARGIN_S < e["time"] < first["time"]
        and not e["injected"]
        and not call.matches(e)
        for e in entries
        if is_cloud_call(e)
    )
    return Observation(
        ended=final is not None,
        state=str(final["state"]["type"]) if final else "RUNNING",
        message=str((final or {}).get("state", {}).get("message") or ""),
        fired=bool(hits),
        repeated=bool(later) or before_reply,
        repeated_before_reply=before_reply,
        retries=retry_evidence(hits, base.exact, task_runs),
        tasks_rerun=sorted(t["name"] for t in task_runs if t["run_count"] > 1),
        polls="{operation}" in call.pattern or "{change}" in call.pattern,
        fault_to_end_s=fault_to_end,
        resource_ids=sorted(
            {i for e in hits for i in resource_ids(e["path"], skip_ids, e.get("query", ""))}
        ),
        duplicate_writes=sorted(repeats),
        read_during_hold=read_during_hold,
        write=bool(first and first.get("write")),
    )


def run_cell(
    lab: BenchLab, flow: str, call: Call, fault: Fault, base: Baseline, n: int
) -> tuple[Observation, float]:
    topo = runtime.topology("lab")
    fresh_lab(lab, flow)
    since = lab.last_seq()
    rule = fault.rule(call, topo.endpoints.call_timeout_s)
    lab.fault(**rule)
    started = time.monotonic()
    run_id = _launch(lab, flow, f"FAULTS-{flow}-{n:03d}")
    final = _wait(lab, run_id)
    took = time.monotonic() - started
    if final is None:
        lab.api.http.post(
            f"/flow_runs/{run_id}/set_state",
            json={"state": {"type": "CANCELLED", "message": "fault matrix: hung"}, "force": True},
        )
    skip = {p.project for p in (topo.regions.primary, topo.regions.secondary)} | {
        topo.regions.primary.name,
        topo.regions.secondary.name,
    }
    entries = lab.requests(since=since)
    # The lab logs a held call when it answers it, which may be after a run that gave up
    # on it has ended: wait for that entry, or the cell would look unreached.
    held_until = time.monotonic() + held_seconds(topo.endpoints.call_timeout_s) + 2
    while fault.timeout and not any(e["injected"] and call.matches(e) for e in entries):
        if time.monotonic() > held_until:
            break
        time.sleep(0.5)
        entries = lab.requests(since=since)
    # Task-run states reach the server's database in batches (lab/prefect_stack.py).
    time.sleep(TASK_RUN_FLUSH_S + 0.5)
    return observe(call, final, entries, base, lab.api.task_runs(run_id), skip), took


def chosen(call: Call, fault: str, cells: list[str]) -> bool:
    """Whether ``--cells`` (``<substring of the call>@<fault>`` items) picks this cell; no
    items pick every cell."""
    picks = [item.rpartition("@") for item in cells]
    return not picks or any(part in call.key and f == fault for part, _, f in picks)


def sweep(
    lab: BenchLab,
    flow: str,
    call_filter: list[str],
    fault_names: list[str],
    cells: list[str],
    known: frozenset[str] = frozenset(),
    base: Baseline | None = None,
) -> tuple[list[Call], dict[tuple[str, str], str], list[str]]:
    """``known``: call keys to leave out (``--new-only``: those a failover makes too);
    ``base``: the flow's baseline, if one was already taken."""
    topo = runtime.topology("lab")
    primary = (topo.regions.primary.project, topo.regions.primary.name)
    base = base or baseline(lab, flow)
    calls = [
        c
        for c in base.calls
        if c.key not in known
        and (not call_filter or any(f in c.key for f in call_filter))
        and any(chosen(c, f, cells) for f in fault_names)
    ]
    figure(f"fault_{flow}_calls", len(calls))
    verdicts: dict[tuple[str, str], str] = {}
    details: list[str] = []
    n = 0
    for call in calls:
        for name in fault_names:
            fault = FAULTS[name]
            if call.api not in fault.apis or not chosen(call, name, cells):
                continue
            n += 1
            seen, took = run_cell(lab, flow, call, fault, base, n)
            verdict = judge(expected(call, fault, flow, primary), seen, fault)
            verdicts[(call.key, name)] = verdict
            line = f"# {flow} {call.key} x {name}: {verdict} ({took:.0f} s) {seen.state}"
            print(f"{line} {seen.message[:240]!r}", flush=True)
            if verdict.startswith("WRONG"):
                details.append(f"{flow} {call.key} x {name}: {verdict}; message {seen.message!r}")
    return calls, verdicts, details


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--flows",
        nargs="*",
        default=["failover"],
        choices=["failover", "failback"],
        help="failback cells each run a failover first: about twice as long",
    )
    parser.add_argument("--calls", nargs="*", default=[], help="substrings of the call keys")
    parser.add_argument("--faults", nargs="*", default=list(FAULTS), choices=list(FAULTS))
    parser.add_argument(
        "--cells", nargs="*", default=[], help="only these: <substring of the call>@<fault>"
    )
    parser.add_argument(
        "--new-only",
        action="store_true",
        help="a failback's cells only for the calls a failover does not make (one failover "
        "baseline gives those): the same call goes through the same classification",
    )
    args = parser.parse_args(argv)
    # The worker the lab starts inherits this: retries wait 0.2 s, 0.4 s... instead of 1 s, 2 s.
    os.environ["LIFEBOAT_RETRY_BACKOFF_S"] = RETRY_BACKOFF_S
    started = time.monotonic()
    verdicts: dict[tuple[str, str], str] = {}
    wrong: list[str] = []
    with bench_lab(base_port=BASE_PORT, pg_prefix=PG_PREFIX, time_scale=TIME_SCALE) as lab:
        known: frozenset[str] = frozenset()
        failover_base = None
        if args.new_only and "failback" in args.flows:
            failover_base = baseline(lab, "failover")
            known = frozenset(c.key for c in failover_base.calls)
        for flow in args.flows:
            leave_out = known if flow == "failback" else frozenset()
            base = failover_base if flow == "failover" else None
            calls, mine, details = sweep(
                lab, flow, args.calls, args.faults, args.cells, leave_out, base
            )
            print(f"# {flow}\n" + render_table(calls, args.faults, mine), flush=True)
            verdicts |= {(f"{flow} {k}", f): v for (k, f), v in mine.items()}
            wrong += details
    for line in wrong:
        print(f"# wrong: {line}", flush=True)
    reached = [v for v in verdicts.values() if v != "not-reached"]
    figure("fault_cells", len(reached))
    figure("fault_cells_wrong", sum(v.startswith("WRONG") for v in reached))
    figure("fault_cells_not_reached", len(verdicts) - len(reached))
    figure("fault_matrix_s", time.monotonic() - started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

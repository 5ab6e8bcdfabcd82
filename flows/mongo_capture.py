"""mongo-capture: MongoDB's changes shipped every 4 minutes, for a 5-minute RPO (seed 004).

The runbook, each run:
- read where the last run stopped (`mongodb-oplog/state.json`: the chain's base backup,
  its last slice, the change streams' resume tokens);
- start a new chain when a newer verified base backup exists (its own tokens), or take
  a base backup when there is none (a verified base starts the chain even when one of
  its cross-region copies failed: that backup run fails and notifies on its own);
- resume every collection's change stream from its token, drain it up to the server's
  cut, and ship the changes as an encrypted, checksummed slice with its manifest; read it
  back; changes past the size cap (``slice_max_bytes``) go on in further slices of the
  same run, each verified and the state moved on after each;
- move the state on, only if it is still the one read (a generation precondition), so
  two runs at once cannot both extend the chain.

A gap is never skipped: a token the server no longer holds (the oplog moved past it), a
collection created since the chain's base (it has no token), a token whose collection is
gone, a drop, rename or invalidate event. The run records it, takes a new base backup
(a new chain starts from it) and fails, so the gap is seen and notified. Restores to a
moment inside the gap are refused.
"""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow, get_run_logger
from pydantic import Field

from flows.backup import backup
from flows.evidence import published
from flows.launch import ENVIRONMENT_FIELD, SwitchRequest
from lifeboat.manifest import Manifest
from lifeboat.record import RunRecord
from lifeboat.slice_cap import SLICE_MAX_BYTES
from lifeboat.slices import CaptureState, SliceManifest, closing_gap
from tasks.catalog import catalog_newest
from tasks.errors import PermanentError
from tasks.mongo_capture import (
    mongo_capture_slice,
    mongo_capture_state_read,
    mongo_capture_state_write,
)
from tasks.mongo_oplog import CaptureGap


@flow(name="mongo-capture", persist_result=True)
def mongo_capture(
    environment: Annotated[str, ENVIRONMENT_FIELD],
    operator: Annotated[str, Field(max_length=100, description="Who launched it")] = "schedule",
    slice_max_bytes: Annotated[
        int, Field(ge=1024, description="A slice's changes at most (bytes); more go on in the next")
    ] = SLICE_MAX_BYTES,
) -> dict[str, Any]:
    request = SwitchRequest.validate_launch(
        environment, "capture MongoDB changes", None, operator, prefix="cap"
    )
    env = request.environment
    record = request.record("mongo-capture", "scheduled", False)
    with published(record, notify_success=False):
        state, generation = mongo_capture_state_read(env)
        with record.step("capture-chain") as step:
            state, closing_gap = _chain(env, record, state, slice_max_bytes)
            step.detail = f"base {state.base_backup_id}, after slice {state.seq}"
        shipped = 0
        while True:
            gap = None
            with record.step("capture-slice") as step:
                try:
                    piece = mongo_capture_slice(env, state, slice_max_bytes)
                except CaptureGap as exc:
                    gap = str(exc)
                    step.outcome, step.detail = "failed", f"gap: {gap}"
                else:
                    step.detail = f"slice {piece.seq}: {piece.oplog.entries} changes" + (
                        ", cut short by the size cap" if piece.capped else ""
                    )
            if gap is not None:
                _after_gap(env, record, state, generation, gap)
            shipped += 1
            if not _goes_on(piece):
                break
            # Caught up over several slices: each one verified, and the state after it.
            state, generation = _store(env, record, piece, generation)
        _advance(env, record, state, generation, piece, closing_gap, shipped)
    return record.model_dump(mode="json")


def _goes_on(piece: SliceManifest) -> bool:
    """Whether the run ships another slice: this one was cut short by the cap, verified,
    and moved on (a slice that kept nothing would not move the next one on)."""
    return piece.capped and piece.status == "verified" and piece.oplog.entries > 0


def _after(piece: SliceManifest) -> CaptureState:
    return CaptureState(
        base_backup_id=piece.base_backup_id,
        seq=piece.seq,
        until=piece.until,
        tokens=piece.oplog.tokens,
    )


def _chain(
    env: str, record: RunRecord, state: CaptureState | None, max_bytes: int
) -> tuple[CaptureState, str | None]:
    """The chain to extend, and a gap met while closing the previous one (or None): the
    server lost its history, or the closing slice is not verified.

    A newer verified base backup starts a new chain. The old one first gets a last
    slice, up to now: the new base is consistent at its end, and the moments between the
    old chain's last slice and that end would otherwise be in neither chain.
    """
    base = catalog_newest(env, "mongodb", verified_only=True)
    if base is None or base.oplog is None:
        why = "no verified base backup with change tokens yet"
        base = _new_base(env, record, why, base.backup_id if base else None)
    if state is None:
        return _start(base), None
    if base.backup_id <= state.base_backup_id:
        return state, None
    with record.step("close-chain") as step:
        try:
            last = mongo_capture_slice(env, state, max_bytes)
            while _goes_on(last):
                last = mongo_capture_slice(env, _after(last), max_bytes)
        except CaptureGap as exc:
            step.outcome, step.detail = "failed", f"gap: {exc}"
            return _start(base), f"closing the chain of base {state.base_backup_id}: {exc}"
        step.detail = (
            f"slice {last.seq} of base {state.base_backup_id} until {last.until.isoformat()}"
        )
        assert base.consistent_at is not None
        gap = closing_gap(last, base.consistent_at)
        if gap is not None:
            step.outcome, step.detail = "failed", f"gap: {gap}"
    return _start(base), gap


def _start(base: Manifest) -> CaptureState:
    assert base.oplog is not None
    return CaptureState(
        base_backup_id=base.backup_id, seq=0, until=base.oplog.until, tokens=base.oplog.tokens
    )


def _new_base(env: str, record: RunRecord, why: str, after: str | None) -> Manifest:
    """A base backup newer than ``after``, verified, to start a chain from.

    Its run may fail after the base verified, when a cross-region copy fails: that run's
    own record reports the copy, and the chain starts from the verified base all the same.
    """
    with record.step("base-backup") as step:
        step.detail = why
        run = backup(
            environment=env,
            sources=["mongodb"],
            retention=False,
            operator="mongo-capture",
            return_state=True,
        )
        # The same lookup as before the backup, read again (cloud_task caches nothing).
        base = catalog_newest(env, "mongodb", verified_only=True)
        if base is None or base.oplog is None or (after is not None and base.backup_id <= after):
            raise PermanentError(
                f"mongo-capture: the new base backup is not verified ({run.message or run.name})"
            )
        step.detail = f"{why}: base backup {base.backup_id}"
        if not run.is_completed():
            step.detail += f" (its backup run {run.name}: {run.message})"
    return base


def _after_gap(env: str, record: RunRecord, state: CaptureState, generation: int, gap: str) -> None:
    """Report the gap, start a new chain from a new base backup, and fail the run."""
    base = _new_base(env, record, "a gap in the change capture", state.base_backup_id)
    mongo_capture_state_write(env, _start(base), generation)
    record.after = {
        "gap": gap,
        "chain_ended": {"base": state.base_backup_id, "after_slice": state.seq},
        "changes_covered_until": state.until.isoformat(),
        "new_base": base.backup_id,
    }
    raise PermanentError(
        f"mongo-capture: gap after slice {state.seq} of base {state.base_backup_id} "
        f"(covered until {state.until.isoformat()}): {gap}; new base backup {base.backup_id}"
    )


def _store(
    env: str, record: RunRecord, piece: SliceManifest, generation: int
) -> tuple[CaptureState, int]:
    with record.step("capture-state") as step:
        nxt = _after(piece)
        generation = mongo_capture_state_write(env, nxt, generation)
        step.detail = f"slice {piece.seq} until {piece.until.isoformat()}"
    return nxt, generation


def _advance(
    env: str,
    record: RunRecord,
    state: CaptureState,
    generation: int,
    piece: SliceManifest,
    closing_gap: str | None,
    shipped: int,
) -> None:
    record.after = {
        "slice": piece.prefix,
        "slices": shipped,
        "status": piece.status,
        "changes": piece.oplog.entries,
        "until": piece.until.isoformat(),
        "base": piece.base_backup_id,
        "gap": closing_gap,
    }
    if piece.status != "verified":
        # The state stays: the next run captures the same changes again, same slice name.
        raise PermanentError(f"mongo-capture: slice {piece.prefix} not verified: {piece.error}")
    _store(env, record, piece, generation)
    if closing_gap is not None:
        # The new chain goes on; the hole before its base is reported, never skipped.
        raise PermanentError(f"mongo-capture: gap: {closing_gap}")
    record.finish("completed")
    get_run_logger().info(
        "captured %d changes into %s (%d slices)", piece.oplog.entries, piece.prefix, shipped
    )

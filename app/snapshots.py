"""`Snapshots`: a virtual object keyed by snapshot id that decides when a snapshot may go.

A snapshot can be needed by several owners at once: the sandbox that restores from it after a
suspension, and every checkpoint that points at it, in its own session and in every fork made
from it. Each owner *holds* it under a name (`sandbox:<session>`, `checkpoint:<session>/<id>`)
and *releases* it when done; the backend deletes it when the last holder lets go, and never
before. Keyed by snapshot id, the holders of one snapshot are serialised by Restate, so a
hold and a release can never race.

Holds are calls, not sends: a caller that goes on to release another holder's claim must know
its own hold landed first (a fork holds its checkpoints before anything else is changed).
"""

from __future__ import annotations

import restate
from restate import ObjectContext, ObjectSharedContext
from restate.serde import BytesSerde

from app import retry
from app.errors import not_found
from app.models import HoldersOut, HoldIn
from app.backend import backend
from app.validation import no_input

snapshots_object = restate.VirtualObject("Snapshots", invocation_retry_policy=retry.INVOCATION_RETRY)


@snapshots_object.handler(ingress_private=True)
async def hold(ctx: ObjectContext, req: HoldIn) -> None:
    """Add a holder. Holding a snapshot that was already deleted is a 404."""
    if await ctx.get("deleted", type_hint=bool):
        raise not_found(f"snapshot {ctx.key()!r} was deleted")
    holders = await ctx.get("holders", type_hint=list[str]) or []
    if req.holder not in holders:
        ctx.set("holders", [*holders, req.holder])


@snapshots_object.handler(ingress_private=True)
async def release(ctx: ObjectContext, req: HoldIn) -> None:
    """Remove a holder; the last one out has the snapshot deleted. Repeating it is a no-op."""
    holders = await ctx.get("holders", type_hint=list[str]) or []
    if req.holder not in holders:
        return
    holders.remove(req.holder)
    ctx.set("holders", holders)
    if not holders:
        # One-way: a failing delete (a long provider outage) must not fail whoever let go (a
        # sandbox timer, a reset). A hold that arrives before the delete runs keeps the snapshot.
        ctx.object_send(delete, key=ctx.key(), arg=b"")


@snapshots_object.handler(ingress_private=True, input_serde=BytesSerde())
async def delete(ctx: ObjectContext, raw: bytes) -> None:
    """Delete the snapshot through the backend, unless someone holds it again by now."""
    no_input(raw)
    if await ctx.get("holders", type_hint=list[str]) or await ctx.get("deleted", type_hint=bool):
        return
    snapshot_id = ctx.key()
    await ctx.run_typed(f"delete snapshot {snapshot_id}", _delete, retry.sandbox_step(bool), snapshot_id)
    ctx.set("deleted", True)


async def _delete(snapshot_id: str) -> bool:
    await backend().delete_snapshot(snapshot_id)  # deleting one already gone is a success
    return True


@snapshots_object.handler(kind="shared", input_serde=BytesSerde())
async def holders(ctx: ObjectSharedContext, raw: bytes) -> HoldersOut:
    """Who holds this snapshot, and whether it was deleted."""
    no_input(raw)
    return HoldersOut(holders=await ctx.get("holders", type_hint=list[str]) or [],
                      deleted=bool(await ctx.get("deleted", type_hint=bool)))

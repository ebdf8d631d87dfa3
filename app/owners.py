"""`SessionOwner`: a virtual object keyed by session id that remembers who owns the session.

The web UI serves several users, each with a token of their own. A session belongs to the
user whose token used it first through the UI (a fork's new session: whoever forked it, claimed
before the fork), and the UI answers 403 to every other token for it. The owner is kept here,
durably, so that it survives a restart of the UI (which keeps nothing of its own) and needs no
lock on the Agent: the UI asks before every call (ui/access.py has the whole rule).

What is stored is an opaque owner id that the UI derives from the token (a hash), never the
token itself. The UI claims only sessions that do not exist yet: one created by calling the
ingress directly (or before the UI had tokens) keeps no owner, and answers the UI's admin tokens
only. The ingress is not a public edge (docs/deploy.md): whoever reaches it is trusted with
every session, so these handlers need no protection of their own.
"""

from __future__ import annotations

import re

import restate
from pydantic import BaseModel, Field
from restate import ObjectContext, ObjectSharedContext
from restate.serde import BytesSerde

from app import retry
from app.validation import check_key, no_input, parse

session_owner = restate.VirtualObject("SessionOwner", invocation_retry_policy=retry.INVOCATION_RETRY)


class ClaimIn(BaseModel):
    owner: str = Field(pattern=re.compile(r"^[0-9a-f]{16,128}$"))


class OwnerOut(BaseModel):
    owner: str | None = None  # None: nobody has claimed the session


@session_owner.handler(input_serde=BytesSerde())
async def claim(ctx: ObjectContext, raw: bytes) -> OwnerOut:
    """Make `owner` the session's owner unless it has one; answer the owner either way.

    Exclusive, so two first messages from two users cannot both win.
    """
    check_key(ctx.key())
    req = parse(raw, ClaimIn)
    current = await ctx.get("owner", type_hint=str)
    if current is None:
        ctx.set("owner", req.owner)
        current = req.owner
    return OwnerOut(owner=current)


@session_owner.handler(kind="shared", input_serde=BytesSerde())
async def get(ctx: ObjectSharedContext, raw: bytes) -> OwnerOut:
    no_input(raw)
    check_key(ctx.key())
    return OwnerOut(owner=await ctx.get("owner", type_hint=str))

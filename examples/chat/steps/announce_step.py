"""POST /announcements: publish an announcement to the public `all` group."""

import secrets

from pydantic import BaseModel

from steps.announcement_stream import Announcement
from surge import ApiRequest, ApiResponse, ApiRouteConfig, FlowContext


class Announce(BaseModel):
    """The request body."""

    text: str


config = ApiRouteConfig(name="Announce", method="POST", path="/announcements", body_schema=Announce)


async def handler(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
    """Store the announcement in group `all`; every subscriber sees it, signed in or not."""
    announcement_id = f"ann-{secrets.token_hex(6)}"
    stored = await ctx.streams.announcement.set(
        "all", announcement_id, Announcement(id=announcement_id, text=req.body.text)
    )
    return ApiResponse(status=200, body=stored)

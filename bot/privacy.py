"""Pseudonymous ids: Rasa and the logs see only a keyed hash of channel and user id."""

from __future__ import annotations

import hashlib
import hmac

from typing import TYPE_CHECKING

from bot.settings import Secret

if TYPE_CHECKING:  # pragma: no cover
    from bot.db import Database


def pseudonym(channel: str, user_id: str, key: Secret) -> str:
    """A stable id for (channel, user id) that cannot be reversed without the key."""
    digest = hmac.new(key.reveal().encode(), f"{channel}\x00{user_id}".encode(), hashlib.sha256)
    return digest.hexdigest()[:40]


def erase_conversation(db: "Database", conversation_id: str) -> int:
    """Delete everything the gateway holds about one conversation; returns the rows removed."""
    from sqlalchemy import delete, select

    from bot.db import Conversation, Handoff, HandoffEvent, Message

    with db.session() as s:
        handoff_ids = list(s.scalars(select(Handoff.id).where(Handoff.conversation_id == conversation_id)))
        removed = 0
        if handoff_ids:
            removed += s.execute(delete(HandoffEvent).where(HandoffEvent.handoff_id.in_(handoff_ids))).rowcount
        removed += s.execute(delete(Handoff).where(Handoff.conversation_id == conversation_id)).rowcount
        removed += s.execute(delete(Message).where(Message.conversation_id == conversation_id)).rowcount
        removed += s.execute(delete(Conversation).where(Conversation.id == conversation_id)).rowcount
        return removed

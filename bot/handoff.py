"""Requests for a human counsellor. The queue and console (bot/console) build on these rows."""

from __future__ import annotations

import logging
from typing import Optional

from sqlalchemy import select

from bot.db import Conversation, Database, Handoff, HandoffEvent, utcnow

log = logging.getLogger(__name__)

OPEN_STATUSES = ("waiting", "assigned", "snoozed")
SAFETY_INTENTS = frozenset({
    "fear_of_harm", "self_harm", "violence", "trafficking", "unaccompanied_minor", "detention", "imminent_removal",
})


def request_handoff(db: Database, conversation_id: str, reason: str, urgent: bool) -> Handoff:
    """Open a handoff for the conversation, or raise the priority of the one already open."""
    with db.session() as s:
        if s.get(Conversation, conversation_id) is None:
            # The action server can be reached without the gateway (e.g. rasa shell): keep the request.
            s.add(Conversation(id=conversation_id, channel="unknown"))
            s.flush()
        handoff = s.scalars(
            select(Handoff).where(Handoff.conversation_id == conversation_id, Handoff.status.in_(OPEN_STATUSES))
        ).first()
        priority = "urgent" if urgent else "normal"
        if handoff is None:
            handoff = Handoff(conversation_id=conversation_id, status="waiting", priority=priority,
                              reason=reason, urgent=urgent)
            s.add(handoff)
            s.flush()
            s.add(HandoffEvent(handoff_id=handoff.id, kind="created", detail=f"{priority}:{reason}"))
        elif urgent and handoff.priority != "urgent":
            handoff.priority, handoff.urgent, handoff.reason = "urgent", True, reason
            handoff.last_activity_at = utcnow()
            s.add(HandoffEvent(handoff_id=handoff.id, kind="priority", detail=f"urgent:{reason}"))
        log.info("handoff requested handoff=%s priority=%s reason=%s", handoff.id, handoff.priority, reason)
        return handoff


def open_handoff(db: Database, conversation_id: str) -> Optional[Handoff]:
    with db.session() as s:
        return s.scalars(
            select(Handoff).where(Handoff.conversation_id == conversation_id, Handoff.status.in_(OPEN_STATUSES))
        ).first()

"""Rasa's SQL tracker store, as the gateway sees it: only to purge and erase conversations.

Rasa (3.6, `SQLTrackerStore`) keeps every event of a conversation as a row of the `events` table
(`sender_id` = our pseudonymous conversation id, `timestamp` = seconds since the epoch, `data` = the
event as JSON, with the user's text in it). Rasa appends only the events it has not stored yet,
counting the rows it finds; so rows must never be deleted while Rasa is in the middle of a turn for
that conversation, or it would write the whole conversation back. The gateway therefore erases a
conversation only after Rasa answered (see `bot.privacy`), and purges only idle conversations.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any, Dict, List, Optional

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)


class TrackerStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: Optional[Engine] = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            kwargs: Dict[str, Any] = {"future": True, "pool_pre_ping": True, "hide_parameters": True}
            if self.url.startswith("sqlite"):
                kwargs["connect_args"] = {"timeout": 30}
            self._engine = create_engine(self.url, **kwargs)
        return self._engine

    def _exists(self, connection) -> bool:
        return inspect(connection).has_table("events")

    def delete(self, sender_id: str) -> int:
        """Remove every event of one conversation; returns how many."""
        with self.engine.begin() as c:
            if not self._exists(c):
                return 0
            return c.execute(text("DELETE FROM events WHERE sender_id = :s"), {"s": sender_id}).rowcount

    def count(self, sender_id: str) -> int:
        with self.engine.connect() as c:
            if not self._exists(c):
                return 0
            return int(c.execute(text("SELECT COUNT(*) FROM events WHERE sender_id = :s"), {"s": sender_id}).scalar())

    def senders_idle_since(self, cutoff: dt.datetime) -> Dict[str, int]:
        """Conversations whose newest event is older than `cutoff` (UTC): sender id -> number of events."""
        with self.engine.connect() as c:
            if not self._exists(c):
                return {}
            rows = c.execute(text("SELECT sender_id, MAX(timestamp), COUNT(*) FROM events GROUP BY sender_id")).all()
        limit = cutoff.replace(tzinfo=dt.timezone.utc).timestamp()
        return {sender: int(n) for sender, newest, n in rows if newest is None or float(newest) < limit}

    def slots(self, sender_id: str) -> Dict[str, Any]:
        """The slot values the tracker holds now (the last value set for each slot)."""
        values: Dict[str, Any] = {}
        with self.engine.connect() as c:
            if not self._exists(c):
                return values
            rows = c.execute(text("SELECT data FROM events WHERE sender_id = :s AND type_name = 'slot' ORDER BY id"),
                             {"s": sender_id}).all()
        for (data,) in rows:
            try:
                event = json.loads(data)
            except (TypeError, ValueError):
                continue
            if isinstance(event, dict) and isinstance(event.get("name"), str):
                values[event["name"]] = event.get("value")
        return values

    def user_events(self, after: int = 0, sender: Optional[str] = None, limit: int = 5000):
        """(event id, sender id, event as a dict) of user messages, after event id `after` (oldest first), or
        of one sender (newest first)."""
        query = "SELECT id, sender_id, data FROM events WHERE type_name = 'user'"
        params: Dict[str, Any] = {"limit": limit}
        if sender is not None:
            query += " AND sender_id = :s ORDER BY id DESC LIMIT :limit"
            params["s"] = sender
        else:
            query += " AND id > :after ORDER BY id LIMIT :limit"
            params["after"] = after
        with self.engine.connect() as c:
            if not self._exists(c):
                return []
            rows = c.execute(text(query), params).all()
        events = []
        for event_id, sender_id, data in rows:
            try:
                parsed = json.loads(data)
            except (TypeError, ValueError):
                continue
            if isinstance(parsed, dict):
                events.append((int(event_id), sender_id, parsed))
        return events

    def senders(self) -> List[str]:
        with self.engine.connect() as c:
            if not self._exists(c):
                return []
            return [r[0] for r in c.execute(text("SELECT DISTINCT sender_id FROM events")).all()]

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()

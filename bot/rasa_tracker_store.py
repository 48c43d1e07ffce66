"""Rasa's SQL tracker store, saving a turn without reading the whole conversation again.

With an event broker configured, Rasa 3.6's `SQLTrackerStore.save` first retrieves the conversation
once more (every event since the session started, deserialised and replayed) only to work out which
events are new, then publishes them, then counts the stored events and inserts the new ones. That
second read made every turn slower as a conversation grew (py-spy under `make bench`: 19% of a
replica's CPU). Here the new events are found once, by the count, inserted, and published after the
commit (so the broker never carries an event the store does not have).

Used by endpoints.yml and endpoints.prod.yml (`type: bot.rasa_tracker_store.SQLTrackerStore`); the
table and its rows are Rasa's own, so bot/tracker_store.py (purge, erasure) reads them as before.
"""

from __future__ import annotations

import json
import logging

from rasa.core.tracker_store import SQLTrackerStore as RasaSQLTrackerStore
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.nlu.constants import INTENT_NAME_KEY

log = logging.getLogger(__name__)


class SQLTrackerStore(RasaSQLTrackerStore):
    async def save(self, tracker: DialogueStateTracker) -> None:
        with self.session_scope() as session:
            events = list(self._additional_events(session, tracker))
            for event in events:
                data = event.as_dict()
                session.add(self.SQLEvent(
                    sender_id=tracker.sender_id, type_name=event.type_name, timestamp=data.get("timestamp"),
                    intent_name=data.get("parse_data", {}).get("intent", {}).get(INTENT_NAME_KEY),
                    action_name=data.get("name"), data=json.dumps(data)))
            session.commit()
        if self.event_broker is not None and events:
            await self._stream_new_events(self.event_broker, events, tracker.sender_id)

"""Rasa's SQL tracker store, with a turn's cost that does not grow with the conversation.

Two changes to Rasa 3.6's `SQLTrackerStore` (the table and its rows stay Rasa's own, so
bot/tracker_store.py reads and erases them as before):

1. **Saving without reading again.** With an event broker, Rasa's `save` retrieves the whole
   conversation once more (every event since the session started, deserialised and replayed) only to
   find the new events, then counts the stored rows. Here the tracker remembers how many of its events
   came from the store, so the new ones are known without a query; they are published after the
   commit, so the broker never carries an event the store does not have.

2. **A window of recent turns.** Rasa's policies rebuild the state of every earlier turn for every
   prediction (`past_states` replays the whole tracker), and the action server is sent every event of
   the session with every call. So each turn of a long conversation cost more than the one before
   (`make bench`: turn 200 took 1.8 times turn 10, in stock Rasa as well). `retrieve` now gives Rasa
   the last `WINDOW_TURNS` user turns, preceded by the state the conversation was in when the window
   starts: every slot that differs from its initial value, and the active form with its flags. What
   the policies look at is unchanged: the memoization policy reads 4 turns back, no rule or story has
   more than 3 user steps, and none of our rules needs the conversation's start. tests/unit/
   test_rasa_tracker_store.py checks the state and the last turns' states; tests/slow/
   test_rasa_project.py checks the trained policies' predictions at every point of a long conversation. Nothing is deleted: the window
   only shapes what Rasa works on; the stored conversation is whole, and `retrieve_full_tracker`
   (Rasa's API, exports) returns all of it.

Used by endpoints.yml and endpoints.prod.yml (`type: bot.rasa_tracker_store.SQLTrackerStore`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import Any, Dict, List, Optional, Text

from rasa.core.tracker_store import SQLTrackerStore as RasaSQLTrackerStore
from rasa.shared.core.constants import ACTION_LISTEN_NAME
from rasa.shared.core.events import ActionExecuted, ActiveLoop, Event, SlotSet, deserialise_events
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.nlu.constants import INTENT_NAME_KEY

log = logging.getLogger(__name__)

# User turns Rasa works on. More than the policies look back (4 turns) with room to spare; the hand-off
# card's list of earlier questions comes from the same window (the last 20 are shown anyway).
WINDOW_TURNS = 24
# A conversation is cut only when it is this many turns past the window, so short ones are never touched.
SLACK_TURNS = 8
# How many of the tracker's events came from the store (set by `retrieve`, moved on by `save`).
STORED = "_crossroads_stored_events"


def window_start(events: List[Dict[Text, Any]], turns: int = WINDOW_TURNS, slack: int = SLACK_TURNS) -> int:
    """Index of the first event Rasa gets: the `action_listen` before the `turns`-th last user message,
    or 0 when the conversation is not `slack` turns longer than the window."""
    users = [i for i, event in enumerate(events) if event.get("event") == "user"]
    if len(users) <= turns + slack:
        return 0
    cut = users[-turns]
    previous = events[cut - 1] if cut > 0 else {}
    if previous.get("event") == "action" and previous.get("name") == ACTION_LISTEN_NAME:
        cut -= 1
    return cut


def windowed_tracker(sender_id: Text, events: List[Event], cut: int, slots: Any) -> DialogueStateTracker:
    """`events[cut:]` on top of the state `events[:cut]` leaves behind."""
    before = DialogueStateTracker.from_events(sender_id, events[:cut], slots)
    tail = events[cut:]
    stamp = tail[0].timestamp if tail else None
    prefix: List[Event] = [SlotSet(name, slot.value, timestamp=stamp)
                           for name, slot in before.slots.items()
                           if slot.value != slot.initial_value]
    loop = before.active_loop
    if loop is not None and loop.name:
        prefix.append(ActiveLoop(loop.name, timestamp=stamp))
    tracker = DialogueStateTracker.from_events(sender_id, prefix, slots)
    if loop is not None and loop.name and tracker.active_loop is not None:
        tracker.active_loop = replace(loop)  # its flags too, not only its name
    if before.latest_action:
        tracker.latest_action = dict(before.latest_action)
    for event in tail:
        tracker.update(event)
    return tracker


class SQLTrackerStore(RasaSQLTrackerStore):
    async def retrieve(self, sender_id: Text) -> Optional[DialogueStateTracker]:
        with self.session_scope() as session:
            rows = self._event_query(session, sender_id, fetch_events_from_all_sessions=False).all()
            stored = [json.loads(row.data) for row in rows]
        if not stored or not self.domain:
            return None
        cut = window_start(stored)
        events = deserialise_events(stored)
        if cut == 0:
            tracker = DialogueStateTracker.from_events(sender_id, events, self.domain.slots)
        else:
            tracker = windowed_tracker(sender_id, events, cut, self.domain.slots)
        setattr(tracker, STORED, len(tracker.events))
        return tracker

    async def save(self, tracker: DialogueStateTracker) -> None:
        with self.session_scope() as session:
            known: Optional[int] = getattr(tracker, STORED, None)
            if known is None:  # not from `retrieve` (a new conversation): count what is stored
                known = self._event_query(session, tracker.sender_id, fetch_events_from_all_sessions=False).count()
            events = list(tracker.events)[known:]
            for event in events:
                data = event.as_dict()
                session.add(self.SQLEvent(
                    sender_id=tracker.sender_id, type_name=event.type_name, timestamp=data.get("timestamp"),
                    intent_name=data.get("parse_data", {}).get("intent", {}).get(INTENT_NAME_KEY),
                    action_name=data.get("name"), data=json.dumps(data)))
            session.commit()
        setattr(tracker, STORED, len(tracker.events))
        if self.event_broker is not None and events:
            await self._stream_new_events(self.event_broker, events, tracker.sender_id)

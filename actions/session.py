from __future__ import annotations

from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActionExecuted, EventType, SessionStarted, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.common import metadata_language


class ActionSessionStart(Action):
    """Start a session keeping earlier slots, with the language the gateway holds for this person."""

    def name(self) -> Text:
        return "action_session_start"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: Dict[Text, Any]) -> List[EventType]:
        events: List[EventType] = [SessionStarted()]
        carried = {k: v for k, v in tracker.current_slot_values().items()
                   if v is not None and k not in ("session_started_metadata", "requested_slot")}
        language = metadata_language(tracker.get_slot("session_started_metadata"))
        if language:
            carried["language"] = language
        events.extend(SlotSet(k, v) for k, v in carried.items())
        events.append(ActionExecuted("action_listen"))
        return events

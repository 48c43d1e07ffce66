from __future__ import annotations

import logging
from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.common import database
from bot.handoff import SAFETY_INTENTS, request_handoff

log = logging.getLogger(__name__)


class ActionRequestHandoff(Action):
    """Ask for a human counsellor: urgent after a safety intent, normal otherwise."""

    def name(self) -> Text:
        return "action_request_handoff"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: Dict[Text, Any]) -> List[EventType]:
        intent = (tracker.latest_message.get("intent") or {}).get("name") or "unknown"
        urgent = intent in SAFETY_INTENTS or tracker.get_slot("handoff_priority") == "urgent"
        try:
            request_handoff(database(), tracker.sender_id, reason=intent, urgent=urgent)
        except Exception as exc:  # the safety answer was already sent; never claim what failed
            log.error("handoff request failed reason=%s error=%s", intent, type(exc).__name__)
            dispatcher.utter_message(response="utter_answer_delayed")
            return []
        dispatcher.utter_message(response="utter_handoff_urgent" if urgent else "utter_handoff_requested")
        return [SlotSet("handoff_priority", "urgent" if urgent else "normal")]

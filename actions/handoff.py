from __future__ import annotations

import logging
from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.common import database, language_of, settings
from bot.handoff import (SAFETY_INTENTS, Hours, build_case_card, expected_wait_minutes, position_in_queue,
                         request_handoff)

log = logging.getLogger(__name__)


def when_text(opening, language: str) -> str:
    from babel.dates import format_datetime

    try:
        return format_datetime(opening, "EEEE HH:mm", locale=language)
    except Exception:
        return format_datetime(opening, "EEEE HH:mm", locale="en")


class ActionRequestHandoff(Action):
    """Ask for a human counsellor: urgent after a safety intent (no consent step: nothing delays help),
    normal after the person agreed. Tells the place in the queue and the usual wait, or when
    counsellors work again."""

    def name(self) -> Text:
        return "action_request_handoff"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: Dict[Text, Any]) -> List[EventType]:
        intent = (tracker.latest_message.get("intent") or {}).get("name") or "unknown"
        urgent = intent in SAFETY_INTENTS or tracker.get_slot("handoff_priority") == "urgent"
        user_events = [e for e in tracker.events if e.get("event") == "user"]
        intents = [((e.get("parse_data") or {}).get("intent") or {}).get("name") or "" for e in user_events]
        reason = intent
        if intent in ("affirm", "talk_to_human"):
            reason = "talk_to_human"
        language = language_of(tracker) or "en"
        card = build_case_card(reason, intents, [e.get("text") or "" for e in user_events][-20:],
                               tracker.get_slot("case_facts") or {}, language)
        try:
            db = database()
            handoff = request_handoff(db, tracker.sender_id, reason=reason, urgent=urgent, case_card=card,
                                      consent="urgent" if urgent else "given")
            config = settings()
            hours = Hours.parse(config.counsellor_hours, config.counsellor_timezone)
            from bot.db import utcnow

            now = utcnow()
            working = hours.open_at(now)
            opening = None if working else hours.next_opening(now)
            position = position_in_queue(db, handoff.id)
            minutes = expected_wait_minutes(db, config.handoff_default_wait_minutes)
        except Exception as exc:  # the safety answer was already sent; never claim what failed
            log.error("handoff request failed reason=%s error=%s", reason, type(exc).__name__)
            dispatcher.utter_message(response="utter_answer_delayed")
            return []
        dispatcher.utter_message(response="utter_handoff_urgent" if urgent else "utter_handoff_requested")
        if working:
            dispatcher.utter_message(response="utter_handoff_queue", position=position, minutes=minutes)
        elif opening is not None:
            dispatcher.utter_message(response="utter_handoff_outside_hours", when=when_text(opening, language))
        return [SlotSet("handoff_priority", "urgent" if urgent else "normal")]

from __future__ import annotations

import logging
from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher

from actions.common import database, language_of
from bot.content import store
from bot.services import detect_needs, find_services, format_service, place_name, resolve_place

log = logging.getLogger(__name__)
NEEDS = {"ask_legal_aid": ["legal_aid"], "find_services": []}
GENERAL = {"ask_legal_aid": "utter_legal_aid", "find_services": "utter_find_services"}


class ActionFindServices(Action):
    """With a place in the message, list the best few services; otherwise give the general answer."""

    def name(self) -> Text:
        return "action_find_services"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: Dict[Text, Any]) -> List[EventType]:
        language = language_of(tracker) or "en"
        intent = (tracker.latest_message.get("intent") or {}).get("name") or "find_services"
        general = GENERAL.get(intent, "utter_find_services")
        text = tracker.latest_message.get("text") or ""
        try:
            db = database()
            place = resolve_place(text, db)
            if place is None:
                dispatcher.utter_message(response=general, language=language)
                return []
            needs = NEEDS.get(intent) or detect_needs(text)
            found = find_services(db, place, needs, language, limit=3)
        except Exception as exc:  # never leave the person without an answer
            log.error("service look-up failed error=%s", type(exc).__name__)
            dispatcher.utter_message(response=general, language=language)
            return []
        log.info("services looked up country=%s city=%s results=%s", place.country, bool(place.city), len(found))
        where = place_name(place, language)
        if not found:
            dispatcher.utter_message(response="utter_services_none", place=where, language=language)
            return []
        local = found[0].scope in ("city",) or (found[0].scope == "country" and not place.city)
        dispatcher.utter_message(response="utter_services_found" if local else "utter_services_fallback",
                                 place=where, language=language)
        content = store()
        for item in found:
            dispatcher.utter_message(text=format_service(item, content, language))
        return []

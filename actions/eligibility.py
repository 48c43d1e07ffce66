from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.common import language_of
from bot.content import store
from bot.eligibility import FORM_SLOTS, YES_NO, facts_from_slots, result_messages
from bot.programmes import SITUATIONS, assess_country
from bot.services import country_codes, resolve_place

log = logging.getLogger(__name__)
PRISON = ("none", "under_12_months", "12_months_or_more", "unknown")


class ValidateEligibilityForm(FormValidationAction):
    """Accept only answers the rules can use; countries may be written in any language."""

    def name(self) -> Text:
        return "validate_eligibility_form"

    def _country(self, value: Any, dispatcher: CollectingDispatcher, slot: str, tracker: Tracker) -> Dict[Text, Any]:
        if value == "unknown":
            return {slot: "unknown"}
        if isinstance(value, str) and value in country_codes():  # already resolved (from the first message)
            return {slot: value}
        place = resolve_place(str(value)) if value else None
        if place is None:
            dispatcher.utter_message(response="utter_country_not_understood", language=language_of(tracker))
            return {slot: None}
        return {slot: place.country}

    async def extract_country_of_stay(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                                      domain: DomainDict) -> Dict[Text, Any]:
        """"Can I get help to go back? I am in Germany…": take the country from the first message."""
        intent = (tracker.latest_message.get("intent") or {}).get("name")
        if intent != "ask_eligibility" or tracker.get_slot("country_of_stay"):
            return {}
        place = resolve_place(tracker.latest_message.get("text") or "")
        return {"country_of_stay": place.country} if place else {}

    async def validate_country_of_stay(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                                 domain: DomainDict) -> Dict[Text, Any]:
        return self._country(value, dispatcher, "country_of_stay", tracker)

    async def validate_nationality(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                             domain: DomainDict) -> Dict[Text, Any]:
        return self._country(value, dispatcher, "nationality", tracker)

    async def validate_situation(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                           domain: DomainDict) -> Dict[Text, Any]:
        return {"situation": value if value in SITUATIONS or value == "unknown" else None}

    async def validate_prison_sentence(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                                 domain: DomainDict) -> Dict[Text, Any]:
        return {"prison_sentence": value if value in PRISON else None}

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[EventType]:
        events = await super().run(dispatcher, tracker, domain)
        for slot in YES_NO:
            value = tracker.get_slot(slot)
            if value is not None and value not in ("yes", "no", "unknown"):
                events.append(SlotSet(slot, None))
        return events


# Kept for a counsellor's case card (shown only if the person asks for a person and agrees).
CASE_FACTS = ("country_of_stay", "nationality", "situation", "in_detention", "children")


class ActionCheckEligibility(Action):
    """Tell the result for every programme of the country of stay, then the alternatives; clear the answers from the current state (the tracker history keeps them until purged, docs/privacy.md)."""

    def name(self) -> Text:
        return "action_check_eligibility"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: Dict[Text, Any]) -> List[EventType]:
        language = language_of(tracker) or "en"
        facts = facts_from_slots({slot: tracker.get_slot(slot) for slot in FORM_SLOTS})
        assessments = assess_country(facts)
        log.info("eligibility checked programmes=%s outcomes=%s", len(assessments),
                 ",".join(a.outcome for a in assessments))
        for message in result_messages(assessments, facts.get("country_of_stay", ""), language, store()):
            dispatcher.utter_message(**message, language=language)
        case_facts = {key: facts.get(key) for key in CASE_FACTS if facts.get(key) not in (None, "", "unknown")}
        case_facts["eligibility"] = [{"programme": a.programme.name, "outcome": a.outcome} for a in assessments]
        return [SlotSet(slot, None) for slot in FORM_SLOTS] + [SlotSet("case_facts", case_facts)]

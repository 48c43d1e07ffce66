from __future__ import annotations

import logging
from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher

from actions.common import database, language_of
from bot.privacy import erase_conversation

log = logging.getLogger(__name__)


class ActionDeleteMyData(Action):
    """Erase what the gateway stores about this person (after they confirmed)."""

    def name(self) -> Text:
        return "action_delete_my_data"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: Dict[Text, Any]) -> List[EventType]:
        language = language_of(tracker)
        try:
            removed = erase_conversation(database(), tracker.sender_id)
        except Exception as exc:
            log.error("erasure failed error=%s", type(exc).__name__)
            dispatcher.utter_message(response="utter_answer_delayed")
            return []
        log.info("erasure done rows=%s", removed)
        dispatcher.utter_message(response="utter_data_deleted", language=language)
        return []

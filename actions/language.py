from __future__ import annotations

from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.common import supported
from bot.languages import find_named_language


class ActionChangeLanguage(Action):
    """Switch to the language the person chose (a menu button) or named ("speak French")."""

    def name(self) -> Text:
        return "action_change_language"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: Dict[Text, Any]) -> List[EventType]:
        chosen = None
        for value in tracker.get_latest_entity_values("language"):
            chosen = supported(str(value))
            if chosen:
                break
        text = tracker.latest_message.get("text") or ""
        typed = not text.startswith("/")
        if chosen is None and typed:
            chosen = supported(find_named_language(text))
        if chosen is None:
            # A bare `/language` shows the menu; typed words naming no single language we serve say so.
            dispatcher.utter_message(response="utter_language_unknown" if typed else "utter_language_menu")
            return []
        # The NLG endpoint reads `language` from the arguments: the slot is set only after this action.
        first_turn = not any(e.get("event") == "bot" for e in tracker.events)
        dispatcher.utter_message(response="utter_greet" if first_turn else "utter_language_changed", language=chosen)
        return [SlotSet("language", chosen)]

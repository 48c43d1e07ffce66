"""Privacy requests. The gateway holds the data, so these actions only ask it to act.

Erasing Rasa's tracker while Rasa is in the middle of the turn would not work (Rasa writes the
whole conversation back when it saves), so `action_delete_my_data` sends the gateway a directive
(a custom message `{"crossroads": "erase"}`, which users cannot produce); the gateway erases its own
rows and the tracker events once Rasa has answered, then confirms. `action_show_my_data` likewise
asks the gateway to answer "what do you keep about me" from what it actually holds.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher

log = logging.getLogger(__name__)


class _GatewayDirective:
    """Ask the gateway to do something with the data it holds about this conversation (a mixin, not
    an Action itself: rasa_sdk registers every Action subclass)."""

    action_name = ""
    directive = ""

    def name(self) -> Text:
        return self.action_name

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: Dict[Text, Any]) -> List[EventType]:
        dispatcher.utter_message(json_message={"crossroads": self.directive})
        log.info("%s requested conversation=%s", self.directive, tracker.sender_id)
        return []


class ActionDeleteMyData(_GatewayDirective, Action):
    """The person confirmed "delete my data": the gateway erases everything after this turn."""

    action_name = "action_delete_my_data"
    directive = "erase"


class ActionShowMyData(_GatewayDirective, Action):
    """ "What do you keep about me": the gateway answers from what it holds."""

    action_name = "action_show_my_data"
    directive = "show_my_data"

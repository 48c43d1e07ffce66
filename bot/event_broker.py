"""Rasa's RabbitMQ event broker for analytics, without what identifies a person or what they wrote.

Rasa publishes every tracker event (user messages with their text and entities, bot answers with
their text, slot values such as nationality or "in detention") to the broker. Analytics needs what
happened, not who said what, so `AnalyticsEventBroker` (endpoints.prod.yml, `type:
bot.event_broker.AnalyticsEventBroker`) publishes a reduced event: its type, time, the intent and its
confidence, the action or response name, the slot NAME (never its value), and the conversation's
pseudonymous id replaced by a keyed hash of it (so events of one conversation can be grouped, yet
they cannot be joined with the tracker store or erased data).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any, Dict, Optional, Text

from rasa.core.brokers.pika import PikaEventBroker

KEPT = ("event", "timestamp", "name", "policy", "confidence", "action_name", "intent_name")


def reduce_event(event: Dict[Text, Any], key: bytes) -> Dict[Text, Any]:
    """The analytics form of a Rasa event: no text, entities, slot values or metadata."""
    reduced: Dict[Text, Any] = {k: event[k] for k in KEPT if k in event and not isinstance(event[k], (dict, list))}
    kind = event.get("event")
    if kind == "user":
        intent = (event.get("parse_data") or {}).get("intent") or {}
        reduced["intent"] = intent.get("name")
        if isinstance(intent.get("confidence"), (int, float)):
            reduced["intent_confidence"] = round(float(intent["confidence"]), 3)
        reduced["input_channel"] = event.get("input_channel")
    elif kind == "bot":
        template = (event.get("metadata") or {}).get('utter_action')  # Rasa's metadata key, not one of our answers
        if template:
            reduced["response"] = template
    elif kind == "slot":
        reduced.pop("value", None)  # never the value: "nationality", "in_detention"… are sensitive
    if kind not in ("slot", "action", "active_loop"):
        reduced.pop("name", None)
    sender = event.get("sender_id")
    if sender:
        reduced["conversation"] = hmac.new(key, str(sender).encode(), hashlib.sha256).hexdigest()[:16]
    return reduced


class AnalyticsEventBroker(PikaEventBroker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        secret = os.environ.get("ANALYTICS_KEY") or os.environ.get("PSEUDONYM_KEY") or ""
        # A key of its own, derived so that the analytics id differs from Rasa's sender id.
        self._key = hashlib.sha256(b"crossroads-analytics\0" + secret.encode()).digest()

    def publish(self, event: Dict[Text, Any], headers: Optional[Dict[Text, Text]] = None) -> None:
        super().publish(reduce_event(event, self._key), headers)

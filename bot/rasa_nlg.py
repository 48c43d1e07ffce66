"""Rasa's NLG callback to the gateway, sending only what the gateway reads.

Rasa's `CallbackNaturalLanguageGenerator` posts the whole conversation (every event of the session,
with the person's messages) to the NLG endpoint for each answer. That made every answer's cost grow
with the conversation's length, and after about 23 turns the request passed the gateway's 64 KiB
body limit: answers of custom actions then failed and the person got nothing (found by `make bench`).
The gateway's `/nlg` reads the response name, its arguments, the conversation id and the `language`
slot (bot/app.py), so that is all this generator sends: a request of constant size, and no message
text travelling between processes. One HTTP session per process is kept open instead of one per answer.

Configured in endpoints.yml and endpoints.prod.yml: `nlg: type: bot.rasa_nlg.GatewayNLG`.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Optional, Text

import aiohttp
from rasa.core.constants import DEFAULT_REQUEST_TIMEOUT
from rasa.core.nlg.callback import CallbackNaturalLanguageGenerator
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.exceptions import RasaException
from rasa.utils.endpoints import EndpointConfig

log = logging.getLogger(__name__)


def request_body(utter_action: Text, tracker: DialogueStateTracker, output_channel: Text,
                 arguments: Dict[Text, Any]) -> Dict[Text, Any]:
    # The language the gateway sent with this turn's message: when the slot still equals it, the gateway
    # need not record a change (one database read less per answer).
    metadata = (tracker.latest_message.metadata if tracker.latest_message else None) or {}
    return {"response": utter_action, "arguments": arguments,
            "tracker": {"sender_id": tracker.sender_id, "slots": {"language": tracker.get_slot("language")},
                        "gateway_language": metadata.get("language")},
            "channel": {"name": output_channel}}


def plausible_response(content: Any) -> bool:
    """What the rest of Rasa needs of an NLG answer. Rasa's own check validates its JSON schema, the schema
    itself included, on every answer (8% of a replica's CPU under `make bench`); the answer comes from our
    gateway, whose renderer is tested."""
    if not isinstance(content, dict):
        return False
    text, buttons = content.get("text"), content.get("buttons")
    return (text is None or isinstance(text, str)) and (buttons is None or (
        isinstance(buttons, list) and all(isinstance(b, dict) and isinstance(b.get("title"), str) for b in buttons)))


class GatewayNLG(CallbackNaturalLanguageGenerator):
    def __init__(self, endpoint_config: EndpointConfig, domain: Any = None, **_: Any) -> None:
        super().__init__(endpoint_config)
        self._session: Optional[aiohttp.ClientSession] = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=DEFAULT_REQUEST_TIMEOUT))
        return self._session

    async def generate(self, utter_action: Text, tracker: DialogueStateTracker, output_channel: Text,
                       **kwargs: Any) -> Dict[Text, Any]:
        kwargs.pop("domain_responses", None)
        body = request_body(utter_action, tracker, output_channel, kwargs)
        params = {"token": self.nlg_endpoint.token} if self.nlg_endpoint.token else {}
        try:
            async with self._client().post(self.nlg_endpoint.url, json=body, params=params) as response:
                if response.status != 200:
                    raise RasaException(f"NLG endpoint answered {response.status} for {utter_action}")
                content = await response.json()
        except (aiohttp.ClientError, OSError) as exc:
            # aiohttp's message carries the URL with its ?token=: never let it reach a log.
            raise RasaException(f"NLG endpoint unreachable for {utter_action}: {type(exc).__name__}") from None
        if plausible_response(content):
            return content
        raise RasaException("NLG web endpoint returned an invalid response.")

"""How the Rasa servers get their answers' text: rendered in the Rasa process, or asked of the gateway.

`ContentNLG` (the default, endpoints.yml and endpoints.prod.yml: `nlg: type: bot.rasa_nlg.ContentNLG`)
renders each response in the Rasa server itself, from the same content files the gateway reads
(data/content/<lang>.yml, `bot.content.ContentStore`). Each answer carries the language it was
rendered in, and the gateway records a language the person chose from the answers of the turn
(bot/conversation.py). Until issue 9's third round, every response was an HTTP request from Rasa to the
gateway's `/nlg`: two or three per turn (docs/decisions/0009-performance.md).

`GatewayNLG` asks the gateway's `/nlg` instead (one place to change content without restarting the
Rasa servers). Rasa's own `CallbackNaturalLanguageGenerator` posts the whole conversation with every
answer; that made every answer's cost grow with the conversation's length, and after about 23 turns the
request passed the gateway's 64 KiB body limit (found by `make bench`). `GatewayNLG` sends what `/nlg`
reads: the response name, its arguments, the conversation id and the language, a request of constant
size with no message text, over one HTTP session per process.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Text

import aiohttp
from rasa.core.constants import DEFAULT_REQUEST_TIMEOUT
from rasa.core.nlg.callback import CallbackNaturalLanguageGenerator
from rasa.core.nlg.generator import NaturalLanguageGenerator
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.exceptions import RasaException
from rasa.utils.endpoints import EndpointConfig

from bot.content import ContentError, ContentStore

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


def answer_language(content: ContentStore, arguments: Mapping[str, Any], tracker: DialogueStateTracker) -> str:
    """The language to answer in: an explicit `language` argument, else the `language` slot, else the
    language the gateway sent with this turn's message (the conversation's, as the gateway holds it)."""
    metadata = (tracker.latest_message.metadata if tracker.latest_message else None) or {}
    for candidate in (arguments.get("language"), tracker.get_slot("language"), metadata.get("language")):
        if isinstance(candidate, str) and candidate in content.languages:
            return candidate
    return content.resolve_language(None)


class ContentNLG(NaturalLanguageGenerator):
    """Renders responses in the Rasa server from the content files; no request leaves the process.

    The content folder is the endpoint's `content_dir`, else $CONTENT_DIR (the gateway's setting of the
    same name), else data/content. A response the content does not have fails the turn (the gateway then
    retries and finally answers `utter_default`), as an unknown response at `/nlg` did."""

    def __init__(self, endpoint_config: Optional[EndpointConfig] = None, domain: Any = None, **_: Any) -> None:
        kwargs = endpoint_config.kwargs if endpoint_config is not None else {}
        folder = kwargs.get("content_dir") or os.environ.get("CONTENT_DIR")
        self.content = ContentStore(Path(folder)) if folder else ContentStore()

    async def generate(self, utter_action: Text, tracker: DialogueStateTracker, output_channel: Text,
                       **kwargs: Any) -> Dict[Text, Any]:
        kwargs.pop("domain_responses", None)
        language = answer_language(self.content, kwargs, tracker)
        try:
            rendered = self.content.render(utter_action, language, kwargs)
        except ContentError:
            raise RasaException(f"no content for the response {utter_action}") from None
        # `language` reaches the gateway with the answer (BotUttered metadata, bot.rasa_channel.GatewayOutput).
        return {**rendered.as_nlg(), "language": rendered.language}

"""The channel through which the gateway talks to Rasa (configured in credentials.yml).

Like Rasa's REST channel, with four differences that matter here:
- one response stays one message: Rasa's collector splits text at every blank line, which would
  turn one answer into several Telegram/WhatsApp notifications; splitting for a platform's
  length limit is the gateway's job;
- failures are logged with the sender id only: Rasa's REST channel logs the message text;
- a turn that failed is an HTTP error, never a 200 with no answer (Rasa's REST channel swallows the
  error and the person would get silence): 503 when a store was unreachable (the tracker store's
  database restarting, the Redis lock store), so the gateway tries another replica or waits;
  500 for anything else;
- each answer carries the `language` it was rendered in (bot.rasa_nlg), so the gateway learns of a
  language the person chose without asking the database or being called back.
"""

from __future__ import annotations

import logging
from asyncio import CancelledError
from typing import Any, Awaitable, Callable, Dict, Text

from rasa.core.channels.channel import CollectingOutputChannel, UserMessage
from rasa.core.channels.rest import RestInput
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.rasa_patches import apply as _apply_patches

_apply_patches()  # this module is loaded in every Rasa server process (credentials.yml)
log = logging.getLogger(__name__)

# Errors that mean "a store is unreachable for now" (by class name, so that no driver must be importable).
_UNAVAILABLE = {"OperationalError", "InterfaceError", "DisconnectionError", "ConnectionError", "TimeoutError",
                "LockError", "ConnectionRefusedError", "ConnectionResetError", "BrokenPipeError",
                "AMQPConnectionError", "OSError"}


def is_unavailable(exc: BaseException) -> bool:
    seen = 0
    while exc is not None and seen < 5:
        if any(c.__name__ in _UNAVAILABLE for c in type(exc).__mro__):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


class GatewayOutput(CollectingOutputChannel):
    @classmethod
    def name(cls) -> Text:
        return "gateway"

    async def send_text_message(self, recipient_id: Text, text: Text, **kwargs: Any) -> None:
        await self._persist_message(self._message(recipient_id, text=text))

    async def send_response(self, recipient_id: Text, message: Dict[Text, Any]) -> None:
        """Each answer keeps the language it was rendered in (bot.rasa_nlg), which the gateway records."""
        language, start = message.get("language"), len(self.messages)
        await super().send_response(recipient_id, message)
        if isinstance(language, str):
            for collected in self.messages[start:]:
                collected["language"] = language


class GatewayInput(RestInput):
    @classmethod
    def name(cls) -> Text:
        return "gateway"

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[None]]) -> Blueprint:
        hook = Blueprint("crossroads_gateway_webhook", __name__)

        @hook.route("/", methods=["GET"])
        async def health(request: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @hook.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            sender_id = await self._extract_sender(request)
            text = self._extract_message(request)
            collector = GatewayOutput()
            try:
                await on_new_message(UserMessage(text, collector, sender_id, input_channel=self.name(),
                                                 metadata=self.get_metadata(request)))
            except CancelledError:
                log.error("gateway channel: timed out sender=%s", sender_id)
                return response.json({"error": "timeout"}, status=503)
            except Exception as exc:  # keep serving; never log the text
                status = 503 if is_unavailable(exc) else 500
                log.error("gateway channel: failed sender=%s error=%s status=%s", sender_id, type(exc).__name__, status)
                return response.json({"error": type(exc).__name__}, status=status)
            return response.json(collector.messages)

        return hook

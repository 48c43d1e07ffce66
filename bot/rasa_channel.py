"""The channel through which the gateway talks to Rasa (configured in credentials.yml).

Like Rasa's REST channel, with two differences that matter here:
- one response stays one message: Rasa's collector splits text at every blank line, which would
  turn one answer into several Telegram/WhatsApp notifications; splitting for a platform's
  length limit is the gateway's job;
- failures are logged with the sender id only: Rasa's REST channel logs the message text.
"""

from __future__ import annotations

import logging
from asyncio import CancelledError
from typing import Any, Awaitable, Callable, Text

from rasa.core.channels.channel import CollectingOutputChannel, UserMessage
from rasa.core.channels.rest import RestInput
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

log = logging.getLogger(__name__)


class GatewayOutput(CollectingOutputChannel):
    @classmethod
    def name(cls) -> Text:
        return "gateway"

    async def send_text_message(self, recipient_id: Text, text: Text, **kwargs: Any) -> None:
        await self._persist_message(self._message(recipient_id, text=text))


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
            except Exception as exc:  # keep serving; never log the text
                log.error("gateway channel: failed sender=%s error=%s", sender_id, type(exc).__name__)
            return response.json(collector.messages)

        return hook

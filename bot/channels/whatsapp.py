"""WhatsApp Cloud API: verify and parse webhooks, send replies through the Graph API.

- `GET /whatsapp/webhook` answers Meta's verification challenge (hub.verify_token).
- `POST /whatsapp/webhook` is accepted only with a valid `X-Hub-Signature-256` (HMAC-SHA256 of
  the raw body with the app secret).
- Replies: text (up to 4096 characters); with buttons, reply buttons (up to 3, titles up to 20
  characters) or a list (up to 10 rows, titles up to 24) with a body of up to 1024 characters.
- Outside the 24-hour customer-service window (counted from the person's last message) only an
  approved template (WHATSAPP_TEMPLATE_NAME) is sent; the replies are held and go out when the
  person writes again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
from typing import Any, Callable, Dict, List, Optional

import httpx

from bot.channels.text import split_for
from bot.conversation import Incoming, Reply
from bot.db import utcnow
from bot.settings import Settings
from bot.worker import Delivery, SendResult

log = logging.getLogger(__name__)

CHANNEL = "whatsapp"
TEXT_LIMIT = 4096
BODY_LIMIT = 1024
REPLY_BUTTONS_MAX, REPLY_TITLE_MAX = 3, 20
LIST_ROWS_MAX, LIST_TITLE_MAX, LIST_DESCRIPTION_MAX, LIST_BUTTON_MAX = 10, 24, 72, 20
WINDOW = dt.timedelta(hours=24)
# Graph API error codes that mean "slow down" (throughput, pair rate, spam rate limits)
RATE_LIMIT_CODES = {4, 80007, 130429, 131048, 131056, 133016}
OUTSIDE_WINDOW_CODE = 131047
_KINDS = {"image": "photo", "audio": "audio", "video": "video", "document": "document", "sticker": "sticker",
          "contacts": "contact"}


def verify_signature(app_secret: str, body: bytes, header: Optional[str]) -> bool:
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header[len("sha256="):].strip().lower())


def parse_webhook(data: Any) -> List[Incoming]:
    """The person's messages in a webhook body, in order; statuses and reactions are skipped.

    Raises ValueError when the body does not have the Cloud API's shape.
    """
    if not isinstance(data, dict) or not isinstance(data.get("entry"), list):
        raise ValueError("not a WhatsApp webhook")
    if data.get("object") != "whatsapp_business_account":
        return []
    found: List[Incoming] = []
    for entry in data["entry"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("changes", []), list):
            raise ValueError("malformed entry")
        for change in entry.get("changes", []):
            if not isinstance(change, dict) or change.get("field") != "messages":
                continue
            value = change.get("value")
            if not isinstance(value, dict):
                raise ValueError("malformed change")
            messages = value.get("messages", [])
            if not isinstance(messages, list):
                raise ValueError("malformed messages")
            for message in messages:
                incoming = _parse_message(message)
                if incoming is not None:
                    found.append(incoming)
    return found


def _parse_message(message: Any) -> Optional[Incoming]:
    if not isinstance(message, dict):
        raise ValueError("malformed message")
    sender, mid, kind = message.get("from"), message.get("id"), message.get("type")
    if not isinstance(sender, str) or not sender or not isinstance(mid, str) or not mid:
        raise ValueError("message without sender or id")
    try:
        sequence = int(message.get("timestamp") or 0)
    except (TypeError, ValueError):
        sequence = 0
    base = dict(message_id=mid, sequence=sequence, address=sender)
    if kind == "text":
        body = (message.get("text") or {}).get("body") if isinstance(message.get("text"), dict) else None
        return Incoming(CHANNEL, sender, text=body if isinstance(body, str) else "", **base)
    if kind == "interactive":
        interactive = message.get("interactive") if isinstance(message.get("interactive"), dict) else {}
        reply = interactive.get("button_reply") or interactive.get("list_reply") or {}
        if not isinstance(reply, dict):
            reply = {}
        return Incoming(CHANNEL, sender, kind="button", payload=str(reply.get("id") or ""),
                        text=str(reply.get("title") or "") or None, **base)
    if kind == "button":  # a quick-reply button of a template: its text is what the person chose
        button = message.get("button") if isinstance(message.get("button"), dict) else {}
        return Incoming(CHANNEL, sender, text=str(button.get("text") or ""), **base)
    if kind == "location":
        return Incoming(CHANNEL, sender, kind="location", **base)  # coordinates are not stored
    if kind == "reaction":
        return None
    if kind == "audio" and isinstance(message.get("audio"), dict) and message["audio"].get("voice"):
        return Incoming(CHANNEL, sender, kind="voice", **base)
    if kind in _KINDS:
        caption = (message.get(kind) or {}).get("caption") if isinstance(message.get(kind), dict) else None
        if isinstance(caption, str) and caption.strip():
            return Incoming(CHANNEL, sender, text=caption, **base)
        return Incoming(CHANNEL, sender, kind=_KINDS[kind], **base)
    return Incoming(CHANNEL, sender, kind="unsupported", **base)


class WhatsAppChannel:
    channel = CHANNEL

    def __init__(self, settings: Settings, list_label: Callable[[Optional[str]], str],
                 transport: Optional[httpx.AsyncBaseTransport] = None) -> None:
        assert settings.whatsapp_access_token is not None and settings.whatsapp_phone_number_id
        self.settings = settings
        self.list_label = list_label
        base = f"{settings.whatsapp_api_base_url}/{settings.whatsapp_api_version}/{settings.whatsapp_phone_number_id}"
        self._client = httpx.AsyncClient(
            base_url=base, timeout=httpx.Timeout(20.0, connect=5.0), transport=transport,
            headers={"Authorization": f"Bearer {settings.whatsapp_access_token.reveal()}"})

    def split(self, reply: Reply, language: Optional[str]) -> List[Reply]:
        return [Reply(p.text, p.buttons) for p in split_for(reply.text, reply.buttons, TEXT_LIMIT,
                                                             body_limit=BODY_LIMIT,
                                                             buttons_per_message=LIST_ROWS_MAX)]

    def body(self, delivery: Delivery) -> Dict[str, Any]:
        message: Dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual",
                                   "to": delivery.address}
        buttons = delivery.buttons
        text = delivery.text or "…"
        if not buttons:
            message.update(type="text", text={"body": text, "preview_url": False})
            return message
        ids = [f"b:{delivery.id}:{i}" for i in range(len(buttons))]
        titles = [str(b.get("title") or "…") for b in buttons]
        if len(buttons) <= REPLY_BUTTONS_MAX and all(len(t) <= REPLY_TITLE_MAX for t in titles):
            action = {"buttons": [{"type": "reply", "reply": {"id": i, "title": t}} for i, t in zip(ids, titles)]}
            message.update(type="interactive", interactive={"type": "button", "body": {"text": text},
                                                            "action": action})
            return message
        rows = []
        for i, title in zip(ids, titles):
            row = {"id": i, "title": title if len(title) <= LIST_TITLE_MAX else title[:LIST_TITLE_MAX - 1] + "…"}
            if len(title) > LIST_TITLE_MAX:
                row["description"] = title[:LIST_DESCRIPTION_MAX]
            rows.append(row)
        label = self.list_label(delivery.language)[:LIST_BUTTON_MAX] or "…"
        message.update(type="interactive", interactive={
            "type": "list", "body": {"text": text},
            "action": {"button": label, "sections": [{"rows": rows[:LIST_ROWS_MAX]}]}})
        return message

    def template(self, delivery: Delivery) -> Dict[str, Any]:
        return {"messaging_product": "whatsapp", "recipient_type": "individual", "to": delivery.address,
                "type": "template", "template": {"name": self.settings.whatsapp_template_name,
                                                 "language": {"code": delivery.language or "en"}}}

    async def _post(self, body: Dict[str, Any]) -> SendResult:
        try:
            response = await self._client.post("/messages", json=body)
        except httpx.HTTPError as exc:
            return SendResult("retry", error=type(exc).__name__.lower()[:64])
        if response.status_code in (200, 201):
            return SendResult.sent()
        code = None
        try:
            error = response.json().get("error") or {}
            code = error.get("code") if isinstance(error, dict) else None
        except ValueError:
            pass
        if response.status_code == 429 or code in RATE_LIMIT_CODES:
            return SendResult("retry", retry_after=_retry_after(response), error=f"rate_limit_{code or 429}")
        if response.status_code >= 500:
            return SendResult("retry", error=f"http_{response.status_code}")
        if code == OUTSIDE_WINDOW_CODE:
            return SendResult("held", error="window_closed")
        return SendResult("failed", error=f"http_{response.status_code}_{code}" if code else f"http_{response.status_code}")

    async def send(self, delivery: Delivery) -> SendResult:
        if delivery.id and not self._window_open(delivery):
            return await self._outside_window(delivery)
        return await self._post(self.body(delivery))

    @staticmethod
    def _window_open(delivery: Delivery) -> bool:
        return delivery.last_inbound_at is not None and utcnow() - delivery.last_inbound_at < WINDOW

    async def _outside_window(self, delivery: Delivery) -> SendResult:
        if not self.settings.whatsapp_template_name:
            return SendResult("held", error="window_closed")
        if delivery.template_sent_at is not None and (delivery.last_inbound_at is None
                                                      or delivery.template_sent_at >= delivery.last_inbound_at):
            return SendResult("held", error="window_closed")  # the template already went out
        result = await self._post(self.template(delivery))
        if result.status == "sent":
            return SendResult("held", error="window_closed", template_sent=True)
        if result.status == "retry":
            return result
        return SendResult("held", error="template_failed")

    async def close(self) -> None:
        await self._client.aclose()


def _retry_after(response: httpx.Response) -> Optional[float]:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None

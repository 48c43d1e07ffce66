"""Telegram through python-telegram-bot: parse updates, send replies, poll or register the webhook.

- Webhook mode (a public URL in TELEGRAM_WEBHOOK_URL): Telegram posts updates to
  `/telegram/webhook` with the secret in `X-Telegram-Bot-Api-Secret-Token`; the gateway registers
  the webhook at start.
- Polling mode (a token and no public URL, e.g. on a laptop): the gateway asks for updates with
  long polling. Both feed the same `ConversationService.accept`.
- Only private chats are served: counselling in a group would expose the person.
- Buttons become inline keyboards. Their callback data is a short reference to the stored reply
  (`b:<reply id>:<index>`; Telegram allows 64 bytes), resolved against the same conversation.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
from typing import Any, Callable, Dict, List, Optional

# Read `retry_after` as a timedelta (the form python-telegram-bot is moving to) without warnings.
os.environ.setdefault("PTB_TIMEDELTA", "true")

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update  # noqa: E402
from telegram.error import (BadRequest, Conflict, Forbidden, InvalidToken, NetworkError, RetryAfter,  # noqa: E402
                            TelegramError, TimedOut)
from telegram.request import HTTPXRequest  # noqa: E402

from bot.channels.text import split_for  # noqa: E402
from bot.conversation import Incoming, Reply  # noqa: E402
from bot.settings import Secret  # noqa: E402
from bot.worker import Delivery, SendResult  # noqa: E402

log = logging.getLogger(__name__)

CHANNEL = "telegram"
TEXT_LIMIT = 4096
CALLBACK_DATA_MAX = 64
ALLOWED_UPDATES = ["message", "edited_message", "callback_query"]
# Kinds of message the assistant cannot read, in the order python-telegram-bot's attributes are checked
# (an animation is also a document, so it comes first).
_MEDIA = ["voice", "audio", "video_note", "animation", "video", "photo", "document", "sticker", "contact", "poll"]


def button_token(reply_id: int, index: int) -> str:
    return f"b:{reply_id}:{index}"


def _retry_seconds(value: Any) -> float:
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return float(value)


def parse_update(data: Dict[str, Any]) -> Optional[Incoming]:
    """The message in a Telegram update, or None for updates we do not act on.

    Raises ValueError when the body is not a Telegram update.
    """
    if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
        raise ValueError("not a Telegram update")
    kinds = [k for k in ALLOWED_UPDATES if k in data]
    if not kinds:
        return None  # an update type we do not act on (channel posts, polls, chat members, ...)
    try:
        update = Update.de_json({"update_id": data["update_id"], kinds[0]: data[kinds[0]]}, None)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError("malformed Telegram update") from exc
    if update is None:
        raise ValueError("not a Telegram update")
    sequence = update.update_id
    query = update.callback_query
    if query is not None:
        chat = query.message.chat if query.message is not None else None
        if chat is not None and chat.type != "private":
            return None
        return Incoming(CHANNEL, str(query.from_user.id), kind="button", payload=query.data or "",
                        message_id=f"cb:{query.id}", sequence=sequence,
                        language_hint=query.from_user.language_code,
                        address=str(chat.id if chat is not None else query.from_user.id),
                        text=None)
    edited = update.edited_message
    if edited is not None:
        if edited.chat.type != "private":
            return None
        stamp = int(edited.edit_date.timestamp()) if edited.edit_date else 0
        return Incoming(CHANNEL, _user_id(edited), kind="edited", message_id=f"e:{edited.message_id}:{stamp}",
                        sequence=sequence, address=str(edited.chat.id),
                        language_hint=edited.from_user.language_code if edited.from_user else None)
    message = update.message
    if message is None or message.chat.type != "private":
        return None
    base = dict(message_id=f"m:{message.message_id}", sequence=sequence, address=str(message.chat.id),
                language_hint=message.from_user.language_code if message.from_user else None)
    if message.text is not None:
        return Incoming(CHANNEL, _user_id(message), text=message.text, **base)
    if message.caption:  # a photo or file with words: the words are what we can read
        return Incoming(CHANNEL, _user_id(message), text=message.caption, **base)
    if message.location is not None or message.venue is not None:
        # The coordinates are not stored: the person is asked for a town instead.
        return Incoming(CHANNEL, _user_id(message), kind="location", **base)
    for kind in _MEDIA:
        if getattr(message, kind, None):
            return Incoming(CHANNEL, _user_id(message), kind=kind, **base)
    if message.new_chat_members or message.left_chat_member or message.pinned_message:
        return None
    return Incoming(CHANNEL, _user_id(message), kind="unsupported", **base)


def _user_id(message) -> str:
    return str(message.from_user.id if message.from_user is not None else message.chat.id)


class TelegramChannel:
    """Sending, acknowledging buttons, polling and webhook registration for one bot."""

    channel = CHANNEL

    def __init__(self, token: Secret, api_base_url: str, poll_timeout: int = 25) -> None:
        base = api_base_url.rstrip("/")
        self.bot = Bot(token.reveal(), base_url=f"{base}/bot", base_file_url=f"{base}/file/bot",
                       request=HTTPXRequest(connection_pool_size=32, connect_timeout=5.0, read_timeout=20.0,
                                            write_timeout=20.0, pool_timeout=10.0),
                       get_updates_request=HTTPXRequest(connect_timeout=5.0, read_timeout=poll_timeout + 10.0))
        self.poll_timeout = poll_timeout
        self._acks: set = set()

    # -- sending ---------------------------------------------------------------------------------
    def split(self, reply: Reply, language: Optional[str]) -> List[Reply]:
        return [Reply(p.text, p.buttons) for p in split_for(reply.text, reply.buttons, TEXT_LIMIT)]

    @staticmethod
    def keyboard(delivery: Delivery) -> Optional[InlineKeyboardMarkup]:
        if not delivery.buttons:
            return None
        buttons = [InlineKeyboardButton(str(b.get("title") or "…")[:64], callback_data=button_token(delivery.id, i))
                   for i, b in enumerate(delivery.buttons)]
        short = len(buttons) > 3 and all(len(b.text) <= 16 for b in buttons)
        width = 2 if short else 1
        return InlineKeyboardMarkup([buttons[i:i + width] for i in range(0, len(buttons), width)])

    async def send(self, delivery: Delivery) -> SendResult:
        try:
            await self.bot.send_message(chat_id=int(delivery.address), text=delivery.text or "…",
                                        reply_markup=self.keyboard(delivery))
        except RetryAfter as exc:
            return SendResult("retry", retry_after=_retry_seconds(exc.retry_after), error="429")
        except BadRequest as exc:
            log.warning("telegram refused a reply: %s", type(exc).__name__)
            return SendResult("failed", error="bad_request")
        except Forbidden:
            return SendResult("failed", error="forbidden")  # the person blocked the bot
        except InvalidToken:
            log.error("telegram: the bot token is invalid")
            return SendResult("retry", error="invalid_token")
        except (TimedOut, NetworkError) as exc:
            return SendResult("retry", error=type(exc).__name__.lower()[:64])
        except TelegramError as exc:
            return SendResult("retry", error=type(exc).__name__.lower()[:64])
        return SendResult.sent()

    def acknowledge(self, incoming: Incoming) -> None:
        """Stop the spinner on a pressed button (best effort, in the background)."""
        if not (incoming.message_id or "").startswith("cb:"):
            return
        task = asyncio.create_task(self._ack(incoming.message_id[3:]))
        self._acks.add(task)
        task.add_done_callback(self._acks.discard)

    async def _ack(self, query_id: str) -> None:
        with contextlib.suppress(TelegramError, OSError):
            await self.bot.answer_callback_query(query_id)

    # -- receiving -------------------------------------------------------------------------------
    async def register_webhook(self, url: str, secret: Secret) -> None:
        for attempt in range(5):
            try:
                await self.bot.set_webhook(url=url, secret_token=secret.reveal(), allowed_updates=ALLOWED_UPDATES)
                log.info("telegram webhook registered")
                return
            except RetryAfter as exc:
                await asyncio.sleep(_retry_seconds(exc.retry_after))
            except TelegramError as exc:
                log.error("telegram webhook registration failed: %s", type(exc).__name__)
                await asyncio.sleep(2 ** attempt)

    async def poll(self, accept: Callable[[Dict[str, Any]], None], stopping: Callable[[], bool]) -> None:
        """Long-poll for updates and hand each to `accept`; an update is confirmed only once stored."""
        with contextlib.suppress(TelegramError):
            await self.bot.delete_webhook(drop_pending_updates=False)
        offset: Optional[int] = None
        failures = 0
        log.info("telegram polling started")
        while not stopping():
            try:
                updates = await self.bot.get_updates(offset=offset, timeout=self.poll_timeout,
                                                     allowed_updates=ALLOWED_UPDATES)
                failures = 0
            except RetryAfter as exc:
                await asyncio.sleep(_retry_seconds(exc.retry_after))
                continue
            except Conflict:
                log.error("telegram: another process is polling or a webhook is set; retrying in 5 s")
                await asyncio.sleep(5)
                continue
            except (TimedOut, NetworkError, TelegramError) as exc:
                failures += 1
                log.warning("telegram polling error %s", type(exc).__name__)
                await asyncio.sleep(min(30, 2 ** failures))
                continue
            for update in updates:
                try:
                    accept(update.to_dict())
                except Exception:  # not stored: do not confirm it; Telegram gives it again
                    log.exception("telegram update not stored")
                    await asyncio.sleep(1)
                    break
                offset = update.update_id + 1

    async def close(self) -> None:
        for task in list(self._acks):
            task.cancel()
        with contextlib.suppress(Exception):
            await self.bot.shutdown()

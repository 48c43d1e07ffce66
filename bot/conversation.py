"""The conversation service: one place that decides what happens to a user's message.

Every channel goes through the same two steps:

1. `accept` stores the incoming message (idempotently, on the platform's message id) before the
   channel's webhook answers. It makes the pseudonymous id, keeps the channel address in the
   gateway database only, applies the per-person rate limit and wakes the worker.
2. `process_next` takes a conversation's oldest waiting message, in the platform's order, cleans
   and neutralises it, passes it to Rasa with the language in the metadata and puts the replies
   in the outbox, in one transaction. When Rasa is down the message stays waiting (the person is
   told once that answers are delayed) and is processed when Rasa is back.

`bot.worker` runs step 2 and sends the outbox; `handle` does both at once (tests, tools).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, List, Optional, Tuple

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from bot.content import LANGUAGE_MENU, ContentStore
from bot.db import (IN_DONE, IN_LIMITED, IN_PENDING, OUT_HELD, OUT_PENDING, OUT_SENT, Conversation, Database,
                    Message, utcnow, until_recorded)
from bot import metrics
from bot.handoff import held_by_counsellor
from bot.errors import InputRejected, RasaError, RasaUnavailable
from bot.inputs import Prepared, prepare, storable
from bot.privacy import KEPT, MINIMAL, erase_person, holding, minimise, pseudonym
from bot.rasa_client import RasaClient
from bot.settings import Settings
from bot.tracker_store import TrackerStore

log = logging.getLogger(__name__)

# What people send that the assistant cannot read, and the answer each gets.
MEDIA_KINDS = frozenset({"voice", "audio", "photo", "video", "video_note", "animation", "document", "sticker",
                         "contact", "poll", "unsupported"})
LOCAL_ANSWERS = {**{kind: "utter_unsupported_media" for kind in MEDIA_KINDS},
                 "location": "utter_location_received", "edited": "utter_edited_message",
                 "stale_button": "utter_default"}
# The person's storage choice and the notice: answered by the gateway itself (it holds the data).
PRIVACY_PAYLOADS = {"/privacy_keep": KEPT, "/privacy_minimal": MINIMAL, "/privacy": None}
NOTICE = "utter_privacy_notice"
# What an action asks the gateway to do (a custom message {"crossroads": ...}; users cannot send one).
DIRECTIVES = frozenset({"erase", "show_my_data"})
DELAY_NOTICE_MINUTES = 10  # "answers are delayed" at most once in this many minutes
# How long a turn Rasa has answered waits for the database to record it (within the worker's lease).
RECORD_WITHIN_SECONDS = 90.0
RASA_MAX_ATTEMPTS_ON_ERROR = 3  # Rasa answered with an error (not "down"): retry, then apologise
CHANNEL_KEY_MAX = 128


@dataclass
class Incoming:
    """A message as a channel received it, before anything is stored."""

    channel: str
    user_id: str  # the platform's id of the person (chat id, phone number, browser id)
    text: Optional[str] = None
    payload: Optional[str] = None
    kind: str = "text"
    message_id: Optional[str] = None  # the platform's id: the idempotency key
    sequence: Optional[int] = None  # the platform's order within the conversation
    language_hint: Optional[str] = None
    address: Optional[str] = None  # where replies go (stored, never sent to Rasa or logged)


@dataclass
class Accepted:
    conversation_id: str
    message_id: Optional[int]  # our row id; None when the message was dropped (flooding)
    duplicate: bool = False
    state: str = IN_PENDING


@dataclass
class Reply:
    text: str
    buttons: List[Dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> Dict[str, Any]:
        return {"text": self.text, "buttons": self.buttons}


@dataclass
class Outcome:
    conversation_id: str
    language: str
    direction: str
    replies: List[Reply]
    pending: bool = False  # the answer is not ready yet (Rasa down): it will follow


@dataclass
class Turn:
    """What processing one message did."""

    conversation_id: str
    message_id: int
    status: str  # done | retry | gone
    retry_at: Optional[dt.datetime] = None
    # Replies that could not be stored because the person's data was erased during the turn:
    # delivered once, straight away, and then forgotten.
    ephemeral: List[Reply] = field(default_factory=list)
    channel: Optional[str] = None
    address: Optional[str] = None


def channel_key(message_id: Optional[str]) -> Optional[str]:
    if message_id is None:
        return None
    message_id = str(message_id)
    if len(message_id) <= CHANNEL_KEY_MAX:
        return message_id
    return "sha256:" + hashlib.sha256(message_id.encode()).hexdigest()


def backoff_seconds(attempts: int, cap: float = 30.0) -> float:
    return min(cap, 0.5 * (2 ** max(0, attempts - 1)))


class ConversationService:
    def __init__(self, settings: Settings, db: Database, content: ContentStore, rasa: RasaClient,
                 detect: Optional[Callable[[str], Optional[str]]] = None,
                 parts: Optional[Callable[[str, str, List[Dict[str, str]]], List[Reply]]] = None,
                 tracker: Optional[TrackerStore] = None) -> None:
        self.settings = settings
        self.tracker = tracker if tracker is not None else TrackerStore(settings.tracker_store_url)
        self.db = db
        self.content = content
        self.rasa = rasa
        self._detect = detect
        self._payloads = content.allowed_payloads()
        # channel -> function splitting one reply into what the platform accepts in one message
        self.splitters: Dict[str, Callable[[Reply, str], List[Reply]]] = {}
        self.on_accepted: Callable[[Accepted], None] = lambda accepted: None
        self.rasa_down = False

    # -- language ------------------------------------------------------------------------------
    def _supported(self, language: Optional[str]) -> Optional[str]:
        if not language:
            return None
        code = language.lower().split("-")[0].split("_")[0]
        return code if code in self.content.languages else None

    def _detect_language(self, text: str) -> Optional[str]:
        if self._detect is None:
            from bot.languages import detect_if_ready

            self._detect = detect_if_ready
        return self._supported(self._detect(text))

    def record_language(self, conversation_id: str, language: str, source: str) -> None:
        """Called by the NLG endpoint when Rasa's `language` slot differs from what we hold."""
        language = self._supported(language) or self.settings.default_language
        with self.db.session() as s:
            conv = s.get(Conversation, conversation_id)
            if conv is not None and conv.language != language:
                conv.language = language
                conv.language_source = source

    def _set_language(self, conversation_id: str, language: str, source: str) -> None:
        with self.db.session() as s:
            conv = s.get(Conversation, conversation_id)
            if conv is not None:
                conv.language, conv.language_source = language, source

    def language_of(self, conversation_id: str) -> Optional[str]:
        with self.db.session() as s:
            conv = s.get(Conversation, conversation_id)
            return conv.language if conv else None

    def direction(self, language: Optional[str]) -> str:
        return self.content.languages[self.content.resolve_language(language)].direction

    # -- step 1: accept ------------------------------------------------------------------------
    def conversation_id(self, channel: str, user_id: str) -> str:
        return pseudonym(channel, user_id, self.settings.pseudonym_key)

    def _ensure_conversation(self, incoming: Incoming, cid: str) -> None:
        try:
            with self.db.session() as s:
                if s.get(Conversation, cid) is not None:
                    return
                hint = self._supported(incoming.language_hint)
                s.add(Conversation(id=cid, channel=incoming.channel,
                                   language=hint or self.settings.default_language,
                                   language_source="suggested" if hint else "default"))
        except IntegrityError:  # created at the same moment by another request
            pass

    def _existing(self, cid: str, key: Optional[str]) -> Optional[int]:
        if key is None:
            return None
        with self.db.session() as s:
            return s.scalar(select(Message.id).where(Message.conversation_id == cid,
                                                     Message.channel_message_id == key))

    def accept(self, incoming: Incoming) -> Accepted:
        """Store one incoming message (once per platform message id); wake the worker."""
        incoming = replace(incoming, text=_storable(incoming.text), payload=_storable(incoming.payload),
                           address=_storable(incoming.address), user_id=_storable(incoming.user_id) or "",
                           message_id=_storable(incoming.message_id))
        cid = self.conversation_id(incoming.channel, incoming.user_id)
        key = channel_key(incoming.message_id)
        if incoming.kind == "button":
            existing = self._existing(cid, key)
            if existing is not None:
                metrics.MESSAGES_DUPLICATE.inc(channel=incoming.channel)
                return Accepted(cid, existing, duplicate=True)
            self._ensure_conversation(incoming, cid)
            incoming = self._resolve_button(cid, incoming)
        now = utcnow()
        limit = self.settings.user_messages_per_minute
        # One transaction in the usual case (a known conversation); a new one is created first.
        for first_try in (True, False):
            accepted = self._store_incoming(incoming, cid, key, now, limit, create_missing=first_try)
            if accepted is not None:
                break
            self._ensure_conversation(incoming, cid)
        if accepted.duplicate or accepted.message_id is None:
            return accepted
        metrics.MESSAGES_RECEIVED.inc(channel=incoming.channel)
        if accepted.state == IN_LIMITED:
            log.info("rate limit conversation=%s", cid)
        self.on_accepted(accepted)
        return accepted

    def _store_incoming(self, incoming: Incoming, cid: str, key: Optional[str], now: dt.datetime, limit: int,
                        create_missing: bool) -> Optional[Accepted]:
        """Store the message in the conversation; None when the conversation must be created first."""
        try:
            with self.db.session() as s:
                if key is not None:
                    existing = s.scalar(select(Message.id).where(Message.conversation_id == cid,
                                                                 Message.channel_message_id == key))
                    if existing is not None:
                        metrics.MESSAGES_DUPLICATE.inc(channel=incoming.channel)
                        return Accepted(cid, existing, duplicate=True)
                conv = s.get(Conversation, cid)
                if conv is None:
                    if create_missing:
                        return None
                    return Accepted(cid, None, state="dropped")  # erased this very moment
                recent = s.scalar(select(func.count(Message.id)).where(
                    Message.conversation_id == cid, Message.direction == "in",
                    Message.created_at >= now - dt.timedelta(minutes=1))) or 0
                if recent >= 3 * limit:
                    log.warning("message dropped (flooding) conversation=%s", cid)
                    return Accepted(cid, None, state="dropped")
                state = IN_LIMITED if recent >= limit else IN_PENDING
                row = Message(conversation_id=cid, direction="in", sender="user",
                              text=(incoming.text or "")[: self.settings.max_message_chars + 1],
                              payload=None if incoming.payload is None else incoming.payload[:256],
                              kind=incoming.kind, channel_message_id=key, sequence=incoming.sequence,
                              state=state, created_at=now)
                s.add(row)
                s.flush()
                if incoming.address is not None and conv.address != incoming.address:
                    conv.address = incoming.address
                conv.last_inbound_at = now
                conv.last_activity_at = now
                # The person wrote again: replies held back by a closed window may go now.
                s.execute(update(Message).where(Message.conversation_id == cid, Message.direction == "out",
                                                Message.state == OUT_HELD)
                          .values(state=OUT_PENDING, next_attempt_at=None))
                if state == IN_LIMITED:
                    self._limit_notice(s, conv, now)
                return Accepted(cid, row.id, state=state)
        except IntegrityError:  # the same message, delivered twice at the same moment
            metrics.MESSAGES_DUPLICATE.inc(channel=incoming.channel)
            return Accepted(cid, self._existing(cid, key), duplicate=True)

    def _resolve_button(self, cid: str, incoming: Incoming) -> Incoming:
        """A pressed platform button (`b:<reply id>:<index>`) becomes the payload we offered there."""
        match = re.fullmatch(r"b:(\d{1,12}):(\d{1,3})", incoming.payload or "")
        button = None
        if match:
            with self.db.session() as s:
                row = s.get(Message, int(match.group(1)))
                if row is not None and row.conversation_id == cid and row.direction == "out" and row.buttons:
                    buttons = json.loads(row.buttons)
                    index = int(match.group(2))
                    button = buttons[index] if index < len(buttons) else None
        if not button:
            return replace(incoming, kind="stale_button", payload=None, text=None)
        # "offered": a payload the assistant itself sent to this conversation, so it is trusted as is.
        return replace(incoming, kind="offered", payload=str(button.get("payload") or ""),
                       text=str(button.get("title") or ""))

    def _limit_notice(self, s, conv: Conversation, now: dt.datetime) -> None:
        told = s.scalar(select(func.count(Message.id)).where(
            Message.conversation_id == conv.id, Message.direction == "out", Message.kind == "rate_limited",
            Message.created_at >= now - dt.timedelta(minutes=1)))
        if not told:
            self._enqueue(s, conv, [self._reply("utter_rate_limited", conv.language)], None, kind="rate_limited")

    # -- step 2: process -----------------------------------------------------------------------
    def next_pending(self, cid: str, session: Any = None) -> Optional[Message]:
        if session is None:
            with self.db.session() as s:
                return self.next_pending(cid, s)
        return session.scalars(select(Message).where(
            Message.conversation_id == cid, Message.direction == "in", Message.state == IN_PENDING)
            .order_by(Message.sequence, Message.id).limit(1)).first()

    def _next_turn(self, cid: str, when_idle: Optional[Callable[[Any], None]]):
        """In one transaction: the oldest waiting message and, when it is due, its turn's context
        (`_turn_context`); with no waiting message, `when_idle(session)` runs (the worker's lease release)."""
        with self.db.session() as s:
            row = self.next_pending(cid, s)
            if row is None:
                if when_idle is not None:
                    when_idle(s)
                return None
            if row.next_attempt_at is not None and row.next_attempt_at > utcnow():
                return row, None
            return row, self._turn_context(row, s)

    async def process_next(self, cid: str, when_idle: Optional[Callable[[Any], None]] = None) -> Optional[Turn]:
        """Process the conversation's oldest waiting message, if it is due; None when there is none
        (after running `when_idle` with the session that found none).

        Database work runs in threads (`asyncio.to_thread`): the gateway's event loop serves webhooks and
        every other conversation's turn meanwhile, instead of waiting for PostgreSQL."""
        found = await asyncio.to_thread(self._next_turn, cid, when_idle)
        if found is None:
            return None
        row, context = found
        if context is None:
            return Turn(cid, row.id, "retry", retry_at=row.next_attempt_at)
        turn = await self._process(row, context)
        metrics.TURNS.inc(outcome=turn.status)
        if turn.status in ("done", "gone"):
            metrics.RESPONSE_SECONDS.observe(max((utcnow() - row.created_at).total_seconds(), 0.0))
        return turn

    def _turn_context(self, row: Message, s: Any):
        """The conversation's language, channel, address, whether the notice is due and whether this is
        its first message; or the Turn when there is nothing to ask Rasa (erased; a counsellor holds it)."""
        cid = row.conversation_id
        conv = s.get(Conversation, cid)
        if conv is None:
            return Turn(cid, row.id, "gone")
        held = held_by_counsellor(s, cid)
        if held is not None:
            # A counsellor holds the conversation: the bot is silent and Rasa is not called.
            current = s.get(Message, row.id)
            if current is not None:
                current.state, current.next_attempt_at = IN_DONE, None
            conv.last_activity_at = utcnow()
            return Turn(cid, row.id, "done")
        first_turn = not s.scalar(select(func.count(Message.id)).where(
            Message.conversation_id == cid, Message.direction == "in", Message.id < row.id,
            Message.state != IN_LIMITED))
        return (conv.language, conv.language_source, conv.channel, conv.address, conv.notice_sent_at is None,
                first_turn)

    async def _process(self, row: Message, context: Any) -> Turn:
        cid = row.conversation_id
        if isinstance(context, Turn):
            return context
        language, source, channel, address, notice_due, first_turn = context

        local = LOCAL_ANSWERS.get(row.kind)
        if local is not None:
            return await asyncio.to_thread(self._finish, row, [self._reply(local, language)], channel, address)
        try:
            if row.kind == "offered" and row.payload:
                prepared = Prepared(row.payload, trusted=True)
            else:
                prepared = prepare(row.text if row.kind != "payload" else None, row.payload, self._payloads,
                                   self.settings.max_message_chars)
        except InputRejected as rejected:
            log.info("input rejected conversation=%s reason=%s", cid, rejected.reason)
            rendered = self.content.render(rejected.response, language, rejected.arguments)
            return await asyncio.to_thread(self._finish, row, [Reply(rendered.text)], channel, address)

        if prepared.trusted and prepared.message in PRIVACY_PAYLOADS:
            return await asyncio.to_thread(self._privacy_choice, row, prepared.message, language, channel, address)

        outgoing: List[str] = []
        if not prepared.trusted and source in ("default", "suggested"):
            detected = self._detect_language(prepared.message)
            if detected and detected != language:
                # Tell Rasa first, so its `language` slot (which the NLG endpoint reads) follows.
                outgoing.append('/change_language' + json.dumps({"language": detected}, separators=(",", ":")))
                log.info("language detected conversation=%s language=%s", cid, detected)
            if detected:
                await asyncio.to_thread(self._set_language, cid, detected, "detected")
                language = detected
        outgoing.append(prepared.message)

        replies: List[Reply] = []
        directives: List[str] = []
        answered_in: Optional[str] = None  # the language Rasa rendered its last answer in (bot.rasa_nlg)
        started = time.perf_counter()
        try:
            for message in outgoing:
                for answer in await self.rasa.send(cid, message, {"language": language, "channel": channel}):
                    if isinstance(answer.get("language"), str):
                        answered_in = self._supported(answer["language"]) or answered_in
                    custom = answer.get("custom")
                    if isinstance(custom, dict) and custom.get("crossroads") in DIRECTIVES:
                        directives.append(custom["crossroads"])
                        replies.append(Reply("", [{"directive": custom["crossroads"]}]))
                        continue
                    if not answer.get("text"):
                        continue
                    replies.append(Reply(str(answer.get("text") or ""), _buttons(answer.get("buttons"))))
            metrics.RASA_SECONDS.observe(time.perf_counter() - started)
        except RasaUnavailable as exc:
            log.warning("rasa unavailable conversation=%s error=%s", cid, exc)
            self.rasa_down = True
            return await asyncio.to_thread(self._postpone, row, language)
        except RasaError as exc:
            log.error("rasa error conversation=%s error=%s attempt=%s", cid, exc, row.attempts + 1)
            if row.attempts + 1 < RASA_MAX_ATTEMPTS_ON_ERROR:
                return await asyncio.to_thread(self._postpone, row, language)
            replies = [self._reply("utter_default", language)]
        self.rasa_down = False

        # Rasa has answered (and saved the turn): from here on, wait out a database restart rather than
        # fail the turn, which would ask Rasa the same message again.
        chosen = None
        if answered_in is not None and answered_in != language:
            # Rasa's `language` slot changed during the turn (the person chose a language): _finish records it.
            chosen = language = answered_in
        elif answered_in is None and "erase" not in directives:
            # No rendered answer told the language; a generator that records it itself (bot.rasa_nlg.GatewayNLG
            # through /nlg) may have changed it.
            current = await until_recorded(lambda: self.language_of(cid), RECORD_WITHIN_SECONDS, "an answer")
            if current is None:
                # The person's data was erased during this turn: deliver these replies, store nothing.
                return Turn(cid, row.id, "gone", ephemeral=_plain(replies), channel=channel, address=address)
            language = current
        if "erase" in directives:
            # "Delete my data", confirmed: Rasa has answered and saved its tracker, so both stores can go now.
            erased = await asyncio.to_thread(erase_person, self.db, self.tracker, cid)
            done = [self._reply("utter_data_deleted", language)]
            replies = [done[0] if r.buttons and "directive" in r.buttons[0] else r for r in replies]
            if erased.complete:
                return Turn(cid, row.id, "gone", ephemeral=_plain(replies), channel=channel, address=address)
        if "show_my_data" in directives:
            shown = await asyncio.to_thread(self._my_data, cid, language)
            replies = [shown if r.buttons and r.buttons[0].get("directive") == "show_my_data" else r
                       for r in replies]
        replies = _plain(replies)
        menu = self.content.language_buttons()
        # Not after a safety answer: a person in danger gets the help, not a menu (nor the notice, yet).
        urgent = self._reply("utter_handoff_urgent", language).text
        safety = any(r.text == urgent for r in replies)
        if first_turn and not prepared.trusted and not any(r.buttons == menu or safety for r in replies):
            replies.append(self._reply(LANGUAGE_MENU, language))
        notice = notice_due and not safety
        if notice:
            replies.append(self._notice(language))
        # A pressed button keeps its title for the transcript; typed text is kept as Rasa saw it.
        return await until_recorded(
            lambda: self._finish(row, replies, channel, address, text=None if prepared.trusted else prepared.message,
                                 payload=prepared.message if prepared.trusted else None, notice=notice,
                                 chosen_language=chosen),
            RECORD_WITHIN_SECONDS, "an answer")

    # -- privacy: the notice, the storage choice, "what do you keep about me" --------------------------------
    def privacy_arguments(self) -> Dict[str, Any]:
        return {"retention_days": _number(self.settings.retention_days),
                "minimal_minutes": _number(self.settings.minimal_idle_minutes)}

    def _notice(self, language: Optional[str]) -> Reply:
        return self._reply(NOTICE, language, **self.privacy_arguments())

    def _privacy_choice(self, row: Message, payload: str, language: str, channel: str,
                        address: Optional[str]) -> Turn:
        choice = PRIVACY_PAYLOADS[payload]
        if choice is None:
            return self._finish(row, [self._notice(language)], channel, address, payload=payload, notice=True)
        with self.db.session() as s:
            conv = s.get(Conversation, row.conversation_id)
            if conv is not None:
                conv.storage = choice
        log.info("storage choice conversation=%s choice=%s", row.conversation_id, choice)
        response = "utter_privacy_kept" if choice == KEPT else "utter_privacy_minimal"
        return self._finish(row, [self._reply(response, language, **self.privacy_arguments())], channel, address,
                            payload=payload, notice=True)

    def _my_data(self, cid: str, language: str) -> Reply:
        held = holding(self.db, self.tracker, self.settings, cid)
        label = lambda key, **kw: self.content.label(key, language, **kw)  # noqa: E731
        args = self.privacy_arguments()
        if held is None:
            return self._reply("utter_data_deleted", language)
        answers = ", ".join(f"{label(k)}: {_value(v)}" for k, v in held.answers.items()) or label("none")
        storage = {KEPT: label("storage_kept", **args), MINIMAL: label("storage_minimal", **args)}.get(
            held.storage or "", label("storage_unset", **args))
        channel = {"webchat": label("webchat"), "telegram": "Telegram", "whatsapp": "WhatsApp"}.get(
            held.channel, held.channel)
        name = self.content.languages[self.content.resolve_language(held.language)].name
        rendered = self.content.render("utter_my_data", language, {
            "language": name, "channel": channel, "messages": held.messages, "answers": answers,
            "case": label("case_open") if held.open_case else label("case_none"), "storage": storage,
            "expires": held.expires_at.strftime("%Y-%m-%d")})
        return Reply(rendered.text, rendered.buttons)

    def _finish(self, row: Message, replies: List[Reply], channel: str, address: Optional[str],
                text: Optional[str] = None, payload: Optional[str] = None, notice: bool = False,
                chosen_language: Optional[str] = None) -> Turn:
        with self.db.session() as s:
            conv = s.get(Conversation, row.conversation_id)
            current = s.get(Message, row.id)
            if conv is None or current is None:
                return Turn(row.conversation_id, row.id, "gone", ephemeral=replies, channel=channel, address=address)
            if current.state == IN_DONE:  # recorded by an attempt whose commit's answer was lost
                return Turn(row.conversation_id, row.id, "done")
            current.state = IN_DONE
            current.next_attempt_at = None
            if text is not None:
                current.text = text
            if payload is not None:
                current.payload = payload[:256]
            conv.delay_notified = False
            conv.last_activity_at = utcnow()
            if chosen_language is not None and conv.language != chosen_language:
                conv.language, conv.language_source = chosen_language, "chosen"
            if notice and conv.notice_sent_at is None:
                conv.notice_sent_at = utcnow()
            self._enqueue(s, conv, replies, row.id)
            if conv.storage != KEPT:  # not kept: the message is answered, so its text goes now
                minimise(self.db, row.conversation_id, session=s)
        return Turn(row.conversation_id, row.id, "done", channel=channel)

    def _postpone(self, row: Message, language: str) -> Turn:
        attempts = row.attempts + 1
        retry_at = utcnow() + dt.timedelta(seconds=backoff_seconds(attempts))
        with self.db.session() as s:
            conv = s.get(Conversation, row.conversation_id)
            if conv is None:
                return Turn(row.conversation_id, row.id, "gone")
            # Later messages wait too: a conversation is answered in order.
            s.execute(update(Message).where(Message.conversation_id == row.conversation_id,
                                            Message.direction == "in", Message.state == IN_PENDING)
                      .values(next_attempt_at=retry_at))
            s.execute(update(Message).where(Message.id == row.id).values(attempts=attempts))
            if not conv.delay_notified:
                conv.delay_notified = True
                # Once per outage: Rasa that comes back and fails again minutes later (a replica restarting,
                # the database restarting) does not repeat the notice within DELAY_NOTICE_MINUTES.
                recent = s.scalar(select(func.count(Message.id)).where(
                    Message.conversation_id == conv.id, Message.kind == "delay_notice",
                    Message.created_at >= utcnow() - dt.timedelta(minutes=DELAY_NOTICE_MINUTES)))
                if not recent:
                    self._enqueue(s, conv, [self._reply("utter_answer_delayed", conv.language or language)], row.id,
                                  kind="delay_notice")
        return Turn(row.conversation_id, row.id, "retry", retry_at=retry_at)

    def _enqueue(self, s, conv: Conversation, replies: List[Reply], reply_to: Optional[int],
                 kind: str = "text") -> None:
        split = self.splitters.get(conv.channel)
        for reply in replies:
            for part in (split(reply, conv.language) if split else [reply]):
                s.add(Message(conversation_id=conv.id, direction="out", sender="bot", text=part.text,
                              buttons=json.dumps(part.buttons, ensure_ascii=False) if part.buttons else None,
                              state=OUT_PENDING, reply_to=reply_to, language=conv.language, kind=kind))

    def notify(self, cid: str, response: str, **arguments: Any) -> None:
        """Put one of our answers in the conversation's outbox (e.g. "a counsellor has joined")."""
        with self.db.session() as s:
            conv = s.get(Conversation, cid)
            if conv is not None:
                self._enqueue(s, conv, [self._reply(response, conv.language, **arguments)], None, kind="notice")

    def wake_waiting(self) -> int:
        """Make every waiting message due now (Rasa is back); returns how many."""
        with self.db.session() as s:
            return s.execute(update(Message).where(Message.direction == "in", Message.state == IN_PENDING,
                                                   Message.next_attempt_at.isnot(None))
                             .values(next_attempt_at=None)).rowcount

    def pending_conversations(self, limit: int = 100) -> List[str]:
        """Conversations with a message due for processing."""
        now = utcnow()
        with self.db.session() as s:
            return list(s.scalars(select(Message.conversation_id).where(
                Message.direction == "in", Message.state == IN_PENDING,
                (Message.next_attempt_at.is_(None)) | (Message.next_attempt_at <= now))
                .group_by(Message.conversation_id).order_by(func.min(Message.id)).limit(limit)))

    # -- web chat: replies are collected by the browser ----------------------------------------
    def collect(self, cid: str) -> List[Reply]:
        """Take the conversation's undelivered replies (each handed out once)."""
        with self.db.session() as s:
            return self._collect(s, cid)

    def _collect(self, s, cid: str) -> List[Reply]:
        replies: List[Reply] = []
        rows = s.scalars(select(Message).where(Message.conversation_id == cid, Message.direction == "out",
                                               Message.state == OUT_PENDING).order_by(Message.id)).all()
        for row in rows:
            taken = s.execute(update(Message).where(Message.id == row.id, Message.state == OUT_PENDING)
                              .values(state=OUT_SENT, sent_at=utcnow())).rowcount
            if taken:
                replies.append(Reply(row.text, json.loads(row.buttons) if row.buttons else []))
        if replies:
            minimise(self.db, cid, session=s)
        return replies

    def webchat_view(self, cid: str, message_id: Optional[int] = None) -> Tuple[List[Reply], Optional[str], bool]:
        """In one transaction: the web chat's undelivered replies (taken), the conversation's language, and
        whether `message_id` still waits for an answer."""
        with self.db.session() as s:
            replies = self._collect(s, cid)
            conv = s.get(Conversation, cid)
            pending = message_id is not None and s.scalar(
                select(Message.state).where(Message.id == message_id)) == IN_PENDING
            return replies, conv.language if conv is not None else None, pending

    def state_of(self, message_id: int) -> Optional[str]:
        with self.db.session() as s:
            return s.scalar(select(Message.state).where(Message.id == message_id))

    # -- both steps at once ----------------------------------------------------------------------
    async def handle(self, channel: str, user_id: str, text: Optional[str] = None,
                     payload: Optional[str] = None, language_hint: Optional[str] = None,
                     channel_message_id: Optional[str] = None) -> Outcome:
        """Accept and process one message now, and collect its replies (web chat, tests, tools)."""
        accepted = self.accept(Incoming(channel, user_id, text=text, payload=payload,
                                        kind="payload" if payload is not None and text is None else "text",
                                        message_id=channel_message_id, language_hint=language_hint))
        cid = accepted.conversation_id
        ephemeral: List[Reply] = []
        while True:
            turn = await self.process_next(cid)
            if turn is None or turn.status == "retry":
                break
            ephemeral.extend(turn.ephemeral)
            if turn.status == "gone":
                break
        replies = self.collect(cid) + ephemeral
        language = self.language_of(cid) or self.settings.default_language
        pending = accepted.message_id is not None and self.state_of(accepted.message_id) == IN_PENDING
        return Outcome(cid, language, self.direction(language), replies, pending=pending)

    def _reply(self, response: str, language: Optional[str], **arguments: Any) -> Reply:
        rendered = self.content.render(response, language, arguments)
        return Reply(rendered.text, rendered.buttons)


def _storable(value: Optional[str]) -> Optional[str]:
    """Text that can be stored and encoded: lone surrogates (valid in JSON, not in UTF-8) become U+FFFD."""
    if value is None:
        return None
    return storable(value if isinstance(value, str) else str(value))


def _plain(replies: List[Reply]) -> List[Reply]:
    """Replies without the directive placeholders (a directive that was not carried out says nothing)."""
    return [r for r in replies if not (r.buttons and "directive" in r.buttons[0])]


def _number(value: float) -> Any:
    return int(value) if float(value).is_integer() else value


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "✓" if value else "✗"
    if isinstance(value, str) and len(value) <= 3:
        return value.upper()
    return str(value)


def _buttons(raw: Any) -> List[Dict[str, str]]:
    if not isinstance(raw, list):
        return []
    return [{"title": str(b.get("title", "")), "payload": str(b.get("payload", ""))}
            for b in raw if isinstance(b, dict) and b.get("payload")]

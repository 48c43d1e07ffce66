"""The gateway's background worker: answers waiting messages and sends the outbox.

- Processing: for every conversation with a message due, one task at a time per conversation
  (a lease in the database, so several gateway processes can share the work), messages in the
  platform's order. When Rasa is down a probe checks it every second; when it is back every
  waiting message becomes due at once.
- Sending: the outbox of each conversation is sent in order, one platform call per row, with
  retries and backoff that honour the platform's `retry_after`. A reply that cannot be delivered
  within OUTBOX_GIVE_UP_HOURS is marked failed (the transcript keeps it).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Protocol, Set

from sqlalchemy import func, select, update

from bot import metrics
from bot.conversation import ConversationService, Reply, Turn, backoff_seconds
from bot.db import (IN_PENDING, OUT_FAILED, OUT_HELD, OUT_PENDING, OUT_SENT, Conversation, Message, until_recorded,
                    utcnow)

log = logging.getLogger(__name__)


@dataclass
class Delivery:
    """One row of the outbox, with what a channel needs to send it."""

    id: int
    conversation_id: str
    address: str
    text: str
    buttons: List[Dict[str, str]] = field(default_factory=list)
    language: Optional[str] = None
    last_inbound_at: Optional[dt.datetime] = None
    template_sent_at: Optional[dt.datetime] = None


@dataclass
class SendResult:
    status: str  # sent | retry | failed | held
    retry_after: Optional[float] = None  # seconds, when the platform said so
    error: Optional[str] = None  # a short code, never message text
    template_sent: bool = False

    @classmethod
    def sent(cls) -> "SendResult":
        return cls("sent")


class Sender(Protocol):
    channel: str

    def split(self, reply: Reply, language: Optional[str]) -> List[Reply]:
        ...

    async def send(self, delivery: Delivery) -> SendResult:
        ...

    async def close(self) -> None:
        ...


class Worker:
    def __init__(self, service: ConversationService, senders: Dict[str, Sender], concurrency: int = 64,
                 lease_seconds: float = 120.0, poll_seconds: float = 0.5, probe_seconds: float = 1.0) -> None:
        self.service = service
        self.db = service.db
        self.senders = senders
        self.concurrency = concurrency
        self.lease = dt.timedelta(seconds=lease_seconds)
        self.poll = poll_seconds
        self.probe = probe_seconds
        # The sweep that blanks what is no longer needed is a backstop (a turn and each send batch blank
        # their own messages at once; a resolved case's messages wait for it): a scan every 30 s is enough.
        self.minimise_seconds = 30.0
        self.owner = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._inbound = asyncio.Event()
        self._outbound = asyncio.Event()
        self._processing: Set[str] = set()
        self._passed_over = False  # the process loop skipped a waiting conversation (busy, or at capacity)
        self._sending: Set[str] = set()
        self._tasks: Set[asyncio.Task] = set()
        self._loops: List[asyncio.Task] = []
        self._done: Dict[int, asyncio.Event] = {}
        # Messages this process has answered or postponed lately: a waiting web chat request needs no query.
        self._finished: "OrderedDict[int, None]" = OrderedDict()
        # Replies of an erased conversation for a web chat request that is waiting (never stored).
        self._unstored: Dict[int, List[Reply]] = {}
        self._stopping = False
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        for channel, sender in senders.items():
            service.splitters[channel] = sender.split
        service.on_accepted = self._accepted

    # -- life cycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loops = [asyncio.create_task(self._process_loop(), name="process-loop"),
                       asyncio.create_task(self._send_loop(), name="send-loop"),
                       asyncio.create_task(self._probe_loop(), name="rasa-probe"),
                       asyncio.create_task(self._privacy_loop(), name="privacy")]

    async def stop(self) -> None:
        self._stopping = True
        for task in self._loops:
            task.cancel()
        pending = list(self._tasks)
        if pending:
            await asyncio.wait(pending, timeout=10)
        for task in self._loops + list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for sender in self.senders.values():
            await sender.close()

    def _accepted(self, accepted) -> None:
        # SQLite gives the id of a deleted row (an erased conversation's last message) to the next row:
        # that id's earlier "answered" must not answer for the new message.
        self._finished.pop(accepted.message_id, None)
        self.wake()

    def wake(self) -> None:
        self._set(self._inbound)

    def wake_sender(self) -> None:
        self._set(self._outbound)

    def _set(self, event: asyncio.Event) -> None:
        """Set an event of the worker's loop from that loop or from a thread (database work runs in
        threads, and `accept` wakes the worker)."""
        loop = self._loop
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if loop is None or here is loop:
            event.set()
        else:
            loop.call_soon_threadsafe(event.set)

    def _spawn(self, coro, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sleep(self, event: asyncio.Event) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(event.wait(), self.poll)
        event.clear()

    # -- leases ----------------------------------------------------------------------------------
    def _claim(self, cid: str, owner_col, until_col) -> bool:
        now = utcnow()
        with self.db.session() as s:
            return s.execute(update(Conversation).where(
                Conversation.id == cid,
                (until_col.is_(None)) | (until_col < now) | (owner_col == self.owner))
                .values({owner_col: self.owner, until_col: now + self.lease})).rowcount == 1

    def _release(self, cid: str, owner_col, until_col, session: Any = None) -> None:
        if session is None:
            with self.db.session() as s:
                return self._release(cid, owner_col, until_col, s)
        session.execute(update(Conversation).where(Conversation.id == cid, owner_col == self.owner)
                        .values({owner_col: None, until_col: None}))

    # -- processing ------------------------------------------------------------------------------
    async def _process_loop(self) -> None:
        while not self._stopping:
            try:
                for cid in await asyncio.to_thread(self.service.pending_conversations):
                    if cid in self._processing or len(self._processing) >= self.concurrency:
                        self._passed_over = True  # look again when a conversation is done
                        continue
                    if await asyncio.to_thread(self._claim, cid, Conversation.lease_owner, Conversation.lease_until):
                        self._processing.add(cid)
                        self._spawn(self._process_conversation(cid), "process")
            except Exception:  # the database may be restarting: try again shortly
                log.exception("process loop error")
            await self._sleep(self._inbound)

    def _lease_is_fresh(self, claimed: float) -> bool:
        """A lease taken less than a third of its length ago need not be renewed before the next message."""
        return time.monotonic() - claimed < self.lease.total_seconds() / 3

    async def _process_conversation(self, cid: str) -> None:
        claimed = time.monotonic()  # _process_loop has just claimed it
        released = False
        # With no message left, the lease goes in the transaction that found none (one round trip less).
        release = lambda s: self._release(cid, Conversation.lease_owner, Conversation.lease_until, s)  # noqa: E731
        try:
            while not self._stopping:
                if not self._lease_is_fresh(claimed):
                    if not await asyncio.to_thread(self._claim, cid, Conversation.lease_owner,
                                                   Conversation.lease_until):
                        break
                    claimed = time.monotonic()
                turn = await self.service.process_next(cid, when_idle=release)
                if turn is None:
                    released = True
                    break
                if turn.ephemeral and turn.channel not in self.senders and turn.message_id in self._done:
                    self._unstored[turn.message_id] = list(turn.ephemeral)
                self._notify(turn.message_id)
                if turn.ephemeral:
                    await self._send_ephemeral(turn)
                if turn.channel is None or turn.channel in self.senders:
                    self.wake_sender()  # not for a web chat turn: its request collects the replies
                if turn.status == "retry":
                    break
        except Exception:
            log.exception("processing failed conversation=%s", cid)
        finally:
            self._processing.discard(cid)
            if not released:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self._release, cid, Conversation.lease_owner, Conversation.lease_until)
            if self._passed_over or not released:
                # A place is free, or a message arrived for this conversation while it was being worked on:
                # take the next waiting conversation now, not at the next poll. (A message accepted after
                # this point wakes the loop itself.)
                self._passed_over = False
                self.wake()

    def _notify(self, message_id: int) -> None:
        self._finished[message_id] = None
        while len(self._finished) > 10_000:
            self._finished.popitem(last=False)
        event = self._done.get(message_id)
        if event is not None:
            event.set()

    async def wait_processed(self, message_id: int, timeout: float) -> List[Reply]:
        """Wait until the message was answered or postponed (Rasa down), at most `timeout` seconds.

        Returns the replies that could not be stored because the conversation was erased in that
        turn (they are handed to the waiting request once, then forgotten)."""
        event = self._done.setdefault(message_id, asyncio.Event())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                if message_id in self._finished:
                    return self._unstored.pop(message_id, [])
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return []
                # This process's worker sets the event the moment the message is answered; the database is
                # looked at each second in case another gateway process answered it.
                try:
                    await asyncio.wait_for(event.wait(), min(remaining, 1.0))
                    event.clear()
                    continue
                except asyncio.TimeoutError:
                    pass
                row = await asyncio.to_thread(self._state_and_attempts, message_id)
                if row is None or row.state != IN_PENDING or row.attempts > 0:
                    return self._unstored.pop(message_id, [])
        finally:
            self._done.pop(message_id, None)
            self._unstored.pop(message_id, None)

    def _state_and_attempts(self, message_id: int):
        with self.db.session() as s:
            return s.execute(select(Message.state, Message.attempts).where(Message.id == message_id)).first()

    # -- privacy upkeep -----------------------------------------------------------------------------
    async def _privacy_loop(self) -> None:
        """Blank delivered messages that are not kept (a backstop, every 30 s); collect the review queue (every
        minute); purge expired data (every PURGE_INTERVAL_MINUTES, and once at start)."""
        from bot.privacy import minimise, purge
        from bot.review import collect, purge_unreviewed

        settings = self.service.settings
        interval = settings.purge_interval_minutes * 60
        next_purge = next_review = 0.0
        loop = asyncio.get_running_loop()
        while not self._stopping:
            try:
                await asyncio.to_thread(minimise, self.db)
                if loop.time() >= next_review:  # before the purge can take what is worth reviewing
                    await asyncio.to_thread(collect, self.db, self.service.tracker, settings.review_confidence)
                    next_review = loop.time() + 60
                if loop.time() >= next_purge:
                    await asyncio.to_thread(purge, self.db, self.service.tracker, settings)
                    await asyncio.to_thread(purge_unreviewed, self.db, settings.retention_days)
                    next_purge = loop.time() + interval
            except Exception as exc:  # the database may be restarting: try again shortly
                log.error("privacy upkeep failed error=%s", type(exc).__name__)
            await asyncio.sleep(self.minimise_seconds)

    async def _probe_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.probe)
            if not self.service.rasa_down:
                continue
            try:
                if await self.service.rasa.ready():
                    self.service.rasa_down = False
                    woken = self.service.wake_waiting()
                    log.info("rasa is back; %s waiting messages are due", woken)
                    self.wake()
            except Exception:
                log.exception("rasa probe error")

    # -- sending ---------------------------------------------------------------------------------
    def _due_outbox(self, limit: int = 100) -> List[str]:
        if not self.senders:
            return []
        now = utcnow()
        with self.db.session() as s:
            return list(s.scalars(
                select(Message.conversation_id).join(Conversation, Conversation.id == Message.conversation_id)
                .where(Message.direction == "out", Message.state == OUT_PENDING,
                       Conversation.channel.in_(list(self.senders)),
                       (Message.next_attempt_at.is_(None)) | (Message.next_attempt_at <= now))
                .group_by(Message.conversation_id).order_by(func.min(Message.id)).limit(limit)))

    async def _send_loop(self) -> None:
        while not self._stopping:
            try:
                for cid in await asyncio.to_thread(self._due_outbox):
                    if cid in self._sending or len(self._sending) >= self.concurrency:
                        continue
                    if await asyncio.to_thread(self._claim, cid, Conversation.send_lease_owner,
                                               Conversation.send_lease_until):
                        self._sending.add(cid)
                        self._spawn(self._send_conversation(cid), "send")
            except Exception:
                log.exception("send loop error")
            await self._sleep(self._outbound)

    def _next_delivery(self, cid: str):
        # The reply first, then the conversation: each statement sees what was committed when it ran
        # (PostgreSQL's read committed; SQLite's driver begins no transaction for reads), so the window and
        # address read are at least as new as the reply (a unit test caught a reply stored together with a
        # change of the window being sent by the older window).
        with self.db.session() as s:
            row = s.scalars(select(Message).where(Message.conversation_id == cid, Message.direction == "out",
                                                  Message.state == OUT_PENDING)
                            .order_by(Message.id).limit(1)).first()
            conv = s.get(Conversation, cid)
            return conv, row

    async def _send_conversation(self, cid: str) -> None:
        give_up = dt.timedelta(hours=self.service.settings.outbox_give_up_hours)
        claimed = time.monotonic()  # _send_loop has just claimed it
        try:
            while not self._stopping:
                if not self._lease_is_fresh(claimed):
                    if not await asyncio.to_thread(self._claim, cid, Conversation.send_lease_owner,
                                                   Conversation.send_lease_until):
                        break
                    claimed = time.monotonic()
                conv, row = await asyncio.to_thread(self._next_delivery, cid)
                if conv is None or row is None:
                    break
                now = utcnow()
                if row.next_attempt_at is not None and row.next_attempt_at > now:
                    break
                sender = self.senders.get(conv.channel)
                if sender is None:
                    break
                if not conv.address:
                    await asyncio.to_thread(self._mark, row.id, OUT_FAILED, "no_address")
                    continue
                if now - row.created_at > give_up:
                    await asyncio.to_thread(self._mark, row.id, OUT_FAILED, "expired")
                    log.warning("reply given up conversation=%s message=%s", cid, row.id)
                    continue
                delivery = Delivery(row.id, cid, conv.address, row.text,
                                    json.loads(row.buttons) if row.buttons else [], row.language or conv.language,
                                    conv.last_inbound_at, conv.template_sent_at)
                try:
                    result = await sender.send(delivery)
                except Exception:  # a bug or an unexpected answer: retry later, never lose the reply
                    log.exception("send failed conversation=%s message=%s", cid, row.id)
                    result = SendResult("retry", error="exception")
                if result.status == "sent":
                    # Sent: record it even if the database is restarting, or it would be sent again.
                    await until_recorded(lambda: self._mark(row.id, OUT_SENT), self.lease.total_seconds() * 0.8,
                                         "a sent reply", lambda: self._stopping)
                if not await asyncio.to_thread(self._apply, cid, row, result, conv.channel):
                    break
            # Delivered replies of a conversation whose messages are not kept go now (bot.privacy).
            from bot.privacy import minimise

            await asyncio.to_thread(minimise, self.db, cid)
        except Exception:
            log.exception("sending stopped conversation=%s", cid)
        finally:
            self._sending.discard(cid)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._release, cid, Conversation.send_lease_owner, Conversation.send_lease_until)

    def _mark(self, message_id: int, state: str, error: Optional[str] = None) -> None:
        with self.db.session() as s:
            s.execute(update(Message).where(Message.id == message_id).values(
                state=state, error=error, sent_at=utcnow() if state == OUT_SENT else None))

    def _apply(self, cid: str, row: Message, result: SendResult, channel: Optional[str] = None) -> bool:
        """Record a send result; True to go on with the conversation's next reply."""
        metrics.REPLIES.inc(channel=channel or "unknown", result=result.status)
        if result.status == "sent":  # recorded by _send_conversation
            if row.reply_to:
                with self.db.session() as s:
                    received = s.scalar(select(Message.created_at).where(Message.id == row.reply_to))
                if received is not None:
                    metrics.DELIVERY_SECONDS.observe(max((utcnow() - received).total_seconds(), 0.0),
                                                     channel=channel or "unknown")
            return True
        if result.status == "failed":
            log.warning("reply failed conversation=%s message=%s error=%s", cid, row.id, result.error)
            self._mark(row.id, OUT_FAILED, error=result.error)
            return True
        if result.status == "held":
            with self.db.session() as s:
                s.execute(update(Message).where(Message.id == row.id).values(state=OUT_HELD, error=result.error))
                if result.template_sent:
                    s.execute(update(Conversation).where(Conversation.id == cid)
                              .values(template_sent_at=utcnow()))
            return True
        attempts = row.attempts + 1
        delay = result.retry_after if result.retry_after is not None else backoff_seconds(attempts, cap=60.0)
        retry_at = utcnow() + dt.timedelta(seconds=delay)
        log.info("reply retry conversation=%s message=%s attempt=%s in=%.1fs error=%s", cid, row.id, attempts,
                 delay, result.error)
        with self.db.session() as s:
            s.execute(update(Message).where(Message.id == row.id).values(attempts=attempts, error=result.error))
            # The later replies wait too, so that they arrive in order.
            s.execute(update(Message).where(Message.conversation_id == cid, Message.direction == "out",
                                            Message.state == OUT_PENDING).values(next_attempt_at=retry_at))
        return False

    async def _send_ephemeral(self, turn: Turn) -> None:
        """Replies of a turn whose conversation was erased: sent now, never stored."""
        sender = self.senders.get(turn.channel or "")
        if sender is None or not turn.address:
            return
        for reply in turn.ephemeral:
            for part in sender.split(reply, None):
                for attempt in range(3):
                    # no buttons: nothing is stored that a button could point to
                    result = await sender.send(Delivery(0, turn.conversation_id, turn.address, part.text))
                    if result.status != "retry":
                        break
                    await asyncio.sleep(min(result.retry_after or backoff_seconds(attempt + 1), 5))

"""Privacy: pseudonymous ids, storage choice, erasure, access, retention purge, encryption upkeep.

What is stored where, for how long and who sees it: docs/privacy.md. The rules here:

- Rasa and the logs see only a keyed hash of (channel, user id) (`pseudonym`).
- A person chooses at first contact whether their messages are kept (`storage` = "kept") or not
  ("minimal"; also until they choose). When not kept, answered messages are blanked at once
  (`minimise`) and the whole conversation, with its Rasa tracker, is erased after
  MINIMAL_IDLE_MINUTES without messages (`purge`). Messages of an open counsellor case stay until
  it is resolved, whatever the choice: the counsellor must be able to read them.
- Kept conversations are erased RETENTION_DAYS after their last activity, unless a case is open.
- "Delete my data" erases the tracker events first, then the gateway rows (`erase_person`). If the
  tracker store cannot be reached the request is recorded and the worker finishes it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

from sqlalchemy import and_, bindparam, delete, func, or_, select, text, update

from bot.settings import Secret

if TYPE_CHECKING:  # pragma: no cover
    from bot.db import Database
    from bot.settings import Settings
    from bot.tracker_store import TrackerStore

log = logging.getLogger(__name__)

KEPT, MINIMAL = "kept", "minimal"
OPEN_HANDOFF = ("waiting", "assigned", "snoozed")
# Personal columns stored encrypted (bot.crypto.EncryptedText): table -> (primary key, columns).
ENCRYPTED_COLUMNS = {
    "conversations": ("id", ("address",)),
    "messages": ("id", ("text", "payload")),
    "handoffs": ("id", ("case_card",)),
    "handoff_notes": ("id", ("text",)),
    "review_items": ("id", ("text",)),
}


def pseudonym(channel: str, user_id: str, key: Secret) -> str:
    """A stable id for (channel, user id) that cannot be reversed without the key."""
    digest = hmac.new(key.reveal().encode(), f"{channel}\x00{user_id}".encode(), hashlib.sha256)
    return digest.hexdigest()[:40]


# -- erasure ------------------------------------------------------------------------------------------
def erase_conversation(db: "Database", conversation_id: str) -> int:
    """Delete every gateway row about one conversation; returns the rows removed."""
    from bot.db import Conversation, Handoff, HandoffEvent, HandoffNote, Message

    with db.session() as s:
        handoff_ids = list(s.scalars(select(Handoff.id).where(Handoff.conversation_id == conversation_id)))
        removed = 0
        if handoff_ids:
            removed += s.execute(delete(HandoffEvent).where(HandoffEvent.handoff_id.in_(handoff_ids))).rowcount
            removed += s.execute(delete(HandoffNote).where(HandoffNote.handoff_id.in_(handoff_ids))).rowcount
        removed += s.execute(delete(Handoff).where(Handoff.conversation_id == conversation_id)).rowcount
        removed += s.execute(delete(Message).where(Message.conversation_id == conversation_id)).rowcount
        removed += s.execute(delete(Conversation).where(Conversation.id == conversation_id)).rowcount
        return removed


@dataclass
class Erasure:
    gateway_rows: int = 0
    tracker_events: int = 0
    complete: bool = True


def erase_person(db: "Database", tracker: Optional["TrackerStore"], conversation_id: str) -> Erasure:
    """Erase one conversation everywhere: Rasa's tracker events, then the gateway's rows.

    Call only when Rasa is not in the middle of a turn for this conversation (see bot.tracker_store).
    When the tracker store fails, the gateway rows stay, marked `erase_requested_at`, for a retry.
    """
    from bot.db import Conversation, utcnow

    result = Erasure()
    if tracker is not None:
        try:
            result.tracker_events = tracker.delete(conversation_id)
        except Exception as exc:  # the store is down: keep the request, the worker retries
            log.error("erasure postponed conversation=%s error=%s", conversation_id, type(exc).__name__)
            with db.session() as s:
                conv = s.get(Conversation, conversation_id)
                if conv is not None and conv.erase_requested_at is None:
                    conv.erase_requested_at = utcnow()
            result.complete = False
            return result
    result.gateway_rows = erase_conversation(db, conversation_id)
    log.info("erasure done conversation=%s gateway_rows=%s tracker_events=%s", conversation_id,
             result.gateway_rows, result.tracker_events)
    return result


# -- minimisation ---------------------------------------------------------------------------------------
def _open_case_conversations():
    from bot.db import Handoff

    return select(Handoff.conversation_id).where(Handoff.status.in_(OPEN_HANDOFF))


def minimise(db: "Database", conversation_id: Optional[str] = None, session: Any = None) -> int:
    """Blank the text of answered and delivered messages of conversations whose messages are not kept.

    Messages still needed for delivery (waiting to be answered, or replies not yet delivered) and
    messages of open counsellor cases are left alone. Returns how many messages were blanked. With
    `session`, inside that transaction (a turn's own), else in one of its own.
    """
    query = _minimise_statement(conversation_id is not None)
    parameters = {"only_conversation": conversation_id} if conversation_id is not None else {}
    if session is not None:
        session.flush()
        return session.execute(query, parameters).rowcount
    with db.session() as s:
        return s.execute(query, parameters).rowcount


@lru_cache(maxsize=2)
def _minimise_statement(one_conversation: bool):
    """Built once: SQLAlchemy then reuses its cache key and compiled form. Built per call, twice per turn,
    `minimise` was 20% of the gateway's Python time under a 50-conversation load (py-spy), much of it
    building the statement and computing its cache key."""
    from bot.db import IN_PENDING, OUT_FAILED, OUT_SENT, Conversation, Message

    not_kept = select(Conversation.id).where(or_(Conversation.storage.is_(None), Conversation.storage != KEPT))
    done = or_(and_(Message.direction == "in", Message.state != IN_PENDING),
               and_(Message.direction == "out", Message.state.in_((OUT_SENT, OUT_FAILED))))
    query = update(Message).where(Message.conversation_id.in_(not_kept),
                                  Message.conversation_id.not_in(_open_case_conversations()),
                                  done, or_(Message.text != "", Message.payload.isnot(None)))
    if one_conversation:
        query = query.where(Message.conversation_id == bindparam("only_conversation"))
    return query.values(text="", payload=None).execution_options(synchronize_session=False)


# -- retention ---------------------------------------------------------------------------------------------
@dataclass
class PurgePlan:
    """What a purge removes: conversation ids (pseudonymous) by reason, and orphaned tracker senders."""

    expired_kept: List[str] = field(default_factory=list)
    idle_not_kept: List[str] = field(default_factory=list)
    erase_requested: List[str] = field(default_factory=list)
    tracker_orphans: Dict[str, int] = field(default_factory=dict)  # sender id -> events
    kept_for_open_case: int = 0
    expired_sessions: int = 0

    @property
    def conversations(self) -> List[str]:
        return self.expired_kept + self.idle_not_kept + self.erase_requested


@dataclass
class PurgeReport:
    plan: PurgePlan
    gateway_rows: int = 0
    tracker_events: int = 0
    failed: int = 0
    dry_run: bool = False


def plan_purge(db: "Database", tracker: Optional["TrackerStore"], settings: "Settings",
               now: Optional[dt.datetime] = None) -> PurgePlan:
    from bot.db import ConsoleSession, Conversation, utcnow

    now = now or utcnow()
    kept_cutoff = now - dt.timedelta(days=settings.retention_days)
    idle_cutoff = now - dt.timedelta(minutes=settings.minimal_idle_minutes)
    plan = PurgePlan()
    open_cases = _open_case_conversations()
    not_busy = or_(Conversation.lease_until.is_(None), Conversation.lease_until < now)
    with db.session() as s:
        plan.erase_requested = list(s.scalars(select(Conversation.id).where(
            Conversation.erase_requested_at.isnot(None), not_busy)))
        plan.expired_kept = list(s.scalars(select(Conversation.id).where(
            Conversation.storage == KEPT, Conversation.last_activity_at < kept_cutoff,
            Conversation.id.not_in(open_cases), Conversation.erase_requested_at.is_(None), not_busy)))
        plan.idle_not_kept = list(s.scalars(select(Conversation.id).where(
            or_(Conversation.storage.is_(None), Conversation.storage != KEPT),
            Conversation.last_activity_at < idle_cutoff, Conversation.id.not_in(open_cases),
            Conversation.erase_requested_at.is_(None), not_busy)))
        plan.kept_for_open_case = s.scalar(select(func.count(Conversation.id)).where(
            Conversation.id.in_(open_cases), or_(
                and_(Conversation.storage == KEPT, Conversation.last_activity_at < kept_cutoff),
                and_(or_(Conversation.storage.is_(None), Conversation.storage != KEPT),
                     Conversation.last_activity_at < idle_cutoff)))) or 0
        plan.expired_sessions = s.scalar(select(func.count()).select_from(ConsoleSession)
                                         .where(ConsoleSession.expires_at < now)) or 0
        known = set(s.scalars(select(Conversation.id)))
    if tracker is not None:
        # Tracker histories without a gateway conversation (erased, or Rasa used directly): nobody agreed
        # to keep them, so they go after the short idle time.
        plan.tracker_orphans = {sender: n for sender, n in tracker.senders_idle_since(idle_cutoff).items()
                                if sender not in known}
    return plan


def purge(db: "Database", tracker: Optional["TrackerStore"], settings: "Settings", dry_run: bool = False,
          now: Optional[dt.datetime] = None, progress: Optional[Callable[[int, int], None]] = None) -> PurgeReport:
    """Erase what is past its retention time (or, with `dry_run`, only say what that is)."""
    from bot.db import ConsoleSession, utcnow

    now = now or utcnow()
    plan = plan_purge(db, tracker, settings, now)
    report = PurgeReport(plan, dry_run=dry_run)
    if dry_run:
        return report
    total = len(plan.conversations) + len(plan.tracker_orphans)
    done = 0
    for cid in plan.conversations:
        erased = erase_person(db, tracker, cid)
        report.gateway_rows += erased.gateway_rows
        report.tracker_events += erased.tracker_events
        report.failed += 0 if erased.complete else 1
        done += 1
        if progress:
            progress(done, total)
    for sender in plan.tracker_orphans:
        try:
            report.tracker_events += tracker.delete(sender) if tracker is not None else 0
        except Exception as exc:
            log.error("purge of tracker events failed error=%s", type(exc).__name__)
            report.failed += 1
        done += 1
        if progress:
            progress(done, total)
    with db.session() as s:
        s.execute(delete(ConsoleSession).where(ConsoleSession.expires_at < now))
    if total:
        log.info("purge done conversations=%s tracker_orphans=%s gateway_rows=%s tracker_events=%s failed=%s",
                 len(plan.conversations), len(plan.tracker_orphans), report.gateway_rows, report.tracker_events,
                 report.failed)
    return report


# -- access: "what do you keep about me" --------------------------------------------------------------------
ANSWER_SLOTS = ("country_of_stay", "nationality", "situation", "own_funds", "assisted_before", "in_detention",
                "prison_sentence", "children")


@dataclass
class Holding:
    """What the service holds about one conversation (for the person to see)."""

    channel: str
    language: Optional[str]
    created_at: dt.datetime
    last_activity_at: dt.datetime
    storage: Optional[str]
    has_address: bool
    messages: int
    open_case: bool
    answers: Dict[str, Any]
    tracker_events: int
    expires_at: dt.datetime


def holding(db: "Database", tracker: Optional["TrackerStore"], settings: "Settings",
            conversation_id: str) -> Optional[Holding]:
    from bot.db import Conversation, Handoff, Message

    with db.session() as s:
        conv = s.get(Conversation, conversation_id)
        if conv is None:
            return None
        messages = s.scalar(select(func.count(Message.id)).where(
            Message.conversation_id == conversation_id, or_(Message.text != "", Message.payload.isnot(None)))) or 0
        open_case = bool(s.scalar(select(func.count(Handoff.id)).where(
            Handoff.conversation_id == conversation_id, Handoff.status.in_(OPEN_HANDOFF))))
        answers: Dict[str, Any] = {}
        events = 0
        if tracker is not None:
            slots = tracker.slots(conversation_id)
            facts = slots.get("case_facts") if isinstance(slots.get("case_facts"), dict) else {}
            for name in ANSWER_SLOTS:
                value = slots.get(name)
                if value in (None, "", []) and name in facts:
                    value = facts[name]
                if value not in (None, "", []):
                    answers[name] = value
            events = tracker.count(conversation_id)
        kept = conv.storage == KEPT
        expires = conv.last_activity_at + (dt.timedelta(days=settings.retention_days) if kept
                                           else dt.timedelta(minutes=settings.minimal_idle_minutes))
        return Holding(conv.channel, conv.language, conv.created_at, conv.last_activity_at, conv.storage,
                       bool(conv.address), messages, open_case, answers, events, expires)


# -- encryption upkeep -----------------------------------------------------------------------------------
def _raw_rows(db: "Database", table: str, key: str, column: str, after, limit: int):
    with db.engine.connect() as c:
        return c.execute(text(f"SELECT {key}, {column} FROM {table} WHERE {column} IS NOT NULL AND {column} != '' "
                              f"AND {key} > :after ORDER BY {key} LIMIT :limit"),
                         {"after": after, "limit": limit}).all()


def _first_key(table: str):
    return "" if table == "conversations" else 0


def encrypt_plaintext_rows(db: "Database", batch: int = 500) -> int:
    """Encrypt values stored before encryption existed (once, at upgrade); returns how many."""
    from bot.crypto import _active, is_token

    if _active[0] is None:  # no keys in this process (a tool that only migrates): nothing to do
        return 0
    keyring = _active[0]
    changed = 0
    for table, (key, columns) in ENCRYPTED_COLUMNS.items():
        for column in columns:
            after = _first_key(table)
            while True:
                rows = _raw_rows(db, table, key, column, after, batch)
                if not rows:
                    break
                updates = [{"k": k, "v": keyring.encrypt(v)} for k, v in rows if not is_token(v)]
                if updates:
                    with db.engine.begin() as c:
                        c.execute(text(f"UPDATE {table} SET {column} = :v WHERE {key} = :k"), updates)
                    changed += len(updates)
                after = rows[-1][0]
    if changed:
        log.info("encrypted %s stored values written before encryption", changed)
    return changed


def rotate_keys(db: "Database", batch: int = 500, progress: Optional[Callable[[str, int], None]] = None) -> int:
    """Re-encrypt every stored value with the newest DATA_KEYS key; returns how many changed."""
    from bot.crypto import active, is_token

    keyring = active()
    changed = 0
    for table, (key, columns) in ENCRYPTED_COLUMNS.items():
        for column in columns:
            after = _first_key(table)
            done = 0
            while True:
                rows = _raw_rows(db, table, key, column, after, batch)
                if not rows:
                    break
                updates = []
                for k, v in rows:
                    if not is_token(v):
                        updates.append({"k": k, "v": keyring.encrypt(v)})
                    elif not keyring.current(v):
                        updates.append({"k": k, "v": keyring.rotate(v)})
                if updates:
                    with db.engine.begin() as c:
                        c.execute(text(f"UPDATE {table} SET {column} = :v WHERE {key} = :k"), updates)
                changed += len(updates)
                done += len(rows)
                after = rows[-1][0]
                if progress:
                    progress(f"{table}.{column}", done)
    return changed

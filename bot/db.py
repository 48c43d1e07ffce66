"""Gateway database: SQLAlchemy models and a lazily created engine.

SQLite by default (a file under var/), PostgreSQL in production: the same models and migrations.
Schema changes are Alembic migrations in bot/migrations (``python -m bot db upgrade``).
Nothing connects at import time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional, TypeVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, declarative_base, sessionmaker

from bot.crypto import EncryptedText, Keyring, configure

T = TypeVar("T")
log = logging.getLogger(__name__)

Base = declarative_base()


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Conversation(Base):
    """One person on one channel. `id` is the pseudonymous sender id that Rasa sees."""

    __tablename__ = "conversations"

    id = Column(String(64), primary_key=True)
    channel = Column(String(32), nullable=False)
    language = Column(String(16), nullable=True)
    # how the language was set: detected (first message), suggested (channel/browser) or chosen
    language_source = Column(String(16), nullable=True)
    created_at = Column(DateTime, nullable=False, default=utcnow)
    last_activity_at = Column(DateTime, nullable=False, default=utcnow)
    # Where replies go on the channel (Telegram chat id, WhatsApp number); encrypted, never sent to Rasa
    # or logged.
    address = Column(EncryptedText, nullable=True)
    last_inbound_at = Column(DateTime, nullable=True)  # WhatsApp's 24-hour window starts here
    template_sent_at = Column(DateTime, nullable=True)  # last re-engagement template (WhatsApp)
    delay_notified = Column(Boolean, nullable=False, default=False)  # told "answers are delayed"
    # Leases: one worker at a time processes (or sends for) a conversation, across processes.
    lease_owner = Column(String(64), nullable=True)
    lease_until = Column(DateTime, nullable=True)
    send_lease_owner = Column(String(64), nullable=True)
    send_lease_until = Column(DateTime, nullable=True)
    # The person's choice about storage (docs/privacy.md): None = not chosen yet (treated as "minimal"),
    # "kept" = messages kept for RETENTION_DAYS after the last activity, "minimal" = answered messages are
    # blanked at once and the conversation is erased after MINIMAL_IDLE_MINUTES without messages.
    storage = Column(String(16), nullable=True)
    notice_sent_at = Column(DateTime, nullable=True)  # the privacy notice of the first contact
    # "Delete my data" confirmed but not finished (the tracker store was unreachable): retried.
    erase_requested_at = Column(DateTime, nullable=True)


# Message.state for direction "in": pending -> done (answered) | rejected (bad input, answered)
#   | limited (over the rate limit) ; for "out": pending -> sending -> sent | failed ; held (WhatsApp
#   window closed: sent when the person writes again).
IN_PENDING, IN_DONE, IN_LIMITED = "pending", "done", "limited"
OUT_PENDING, OUT_SENDING, OUT_SENT, OUT_FAILED, OUT_HELD = "pending", "sending", "sent", "failed", "held"


class Message(Base):
    """A message in or out, kept for the transcript a counsellor sees."""

    __tablename__ = "messages"
    __table_args__ = (UniqueConstraint("conversation_id", "channel_message_id", name="uq_message_channel_id"),
                      Index("ix_messages_conversation_state", "conversation_id", "direction", "state"))

    id = Column(Integer, primary_key=True, autoincrement=True)
    conversation_id = Column(String(64), ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False, index=True)
    direction = Column(String(8), nullable=False)  # in | out
    sender = Column(String(16), nullable=False)  # user | bot | counsellor
    channel_message_id = Column(String(128), nullable=True)
    text = Column(EncryptedText, nullable=False, default="")  # "" once blanked (storage "minimal")
    payload = Column(EncryptedText, nullable=True)
    created_at = Column(DateTime, nullable=False, default=utcnow)
    state = Column(String(16), nullable=False, default="done", index=True)
    kind = Column(String(16), nullable=False, default="text")  # text, payload, voice, photo, location, ...
    sequence = Column(BigInteger, nullable=True)  # the platform's order (Telegram update_id, WhatsApp time)
    attempts = Column(Integer, nullable=False, default=0)
    next_attempt_at = Column(DateTime, nullable=True)
    reply_to = Column(Integer, nullable=True)  # for "out": the incoming message it answers
    buttons = Column(Text, nullable=True)  # for "out": JSON list of {title, payload}
    language = Column(String(16), nullable=True)
    error = Column(String(64), nullable=True)  # short code of the last failure, never text
    sent_at = Column(DateTime, nullable=True)
    author_id = Column(Integer, nullable=True)  # the counsellor who wrote an outgoing message
    misunderstood = Column(Boolean, nullable=False, default=False)  # marked in the console
    review_item_id = Column(Integer, nullable=True)  # the review item made from it (bot.review)


class Handoff(Base):
    """A case in the counsellors' queue: waiting -> assigned (-> snoozed -> assigned) -> resolved.

    A conversation without an open case is "with the bot".
    """

    __tablename__ = "handoffs"

    id = Column(Integer, primary_key=True, autoincrement=True)
    conversation_id = Column(String(64), ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False, index=True)
    status = Column(String(16), nullable=False, default="waiting", index=True)
    priority = Column(String(16), nullable=False, default="normal")  # low | normal | high | urgent
    reason = Column(String(64), nullable=False)
    urgent = Column(Boolean, nullable=False, default=False)
    waiting_since = Column(DateTime, nullable=False, default=utcnow)
    last_activity_at = Column(DateTime, nullable=False, default=utcnow)
    language = Column(String(16), nullable=True)
    assignee_id = Column(Integer, ForeignKey("counsellors.id", ondelete="SET NULL"), nullable=True)
    claimed_at = Column(DateTime, nullable=True)
    snoozed_until = Column(DateTime, nullable=True)
    resolved_at = Column(DateTime, nullable=True)
    consent = Column(String(16), nullable=True)  # given | urgent (help was not delayed to ask)
    case_card = Column(EncryptedText, nullable=True)  # JSON: what the counsellor needs to know first


class Counsellor(Base):
    """A console account. Passwords are argon2 hashes; never logged, never returned."""

    __tablename__ = "counsellors"

    id = Column(Integer, primary_key=True, autoincrement=True)
    username = Column(String(64), nullable=False, unique=True)
    display_name = Column(String(128), nullable=False, default="")
    password_hash = Column(String(256), nullable=False)
    role = Column(String(16), nullable=False, default="counsellor")  # counsellor | supervisor | admin
    languages = Column(String(128), nullable=False, default="")  # comma-separated codes
    active = Column(Boolean, nullable=False, default=True)
    failed_logins = Column(Integer, nullable=False, default=0)
    locked_until = Column(DateTime, nullable=True)
    created_at = Column(DateTime, nullable=False, default=utcnow)


class ConsoleSession(Base):
    """A logged-in console session; the cookie holds the token, the table only its hash."""

    __tablename__ = "console_sessions"

    token_hash = Column(String(64), primary_key=True)
    counsellor_id = Column(Integer, ForeignKey("counsellors.id", ondelete="CASCADE"), nullable=False, index=True)
    csrf_token = Column(String(64), nullable=False)
    created_at = Column(DateTime, nullable=False, default=utcnow)
    expires_at = Column(DateTime, nullable=False)


class HandoffNote(Base):
    """A counsellor's private note on a case (never shown to the person)."""

    __tablename__ = "handoff_notes"

    id = Column(Integer, primary_key=True, autoincrement=True)
    handoff_id = Column(Integer, ForeignKey("handoffs.id", ondelete="CASCADE"), nullable=False, index=True)
    author_id = Column(Integer, ForeignKey("counsellors.id", ondelete="SET NULL"), nullable=True)
    text = Column(EncryptedText, nullable=False)
    created_at = Column(DateTime, nullable=False, default=utcnow)


class HandoffEvent(Base):
    """Audit log: every status, priority or assignment change of a handoff."""

    __tablename__ = "handoff_events"

    id = Column(Integer, primary_key=True, autoincrement=True)
    handoff_id = Column(Integer, ForeignKey("handoffs.id", ondelete="CASCADE"), nullable=False, index=True)
    kind = Column(String(32), nullable=False)
    detail = Column(String(256), nullable=True)
    actor = Column(String(64), nullable=False, default="system")
    created_at = Column(DateTime, nullable=False, default=utcnow)


# ReviewItem.status: pending -> labelled (an intent, or out_of_scope) | discarded ; labelled -> applied
# (written to data/nlu/<language>.yml).
REVIEW_PENDING, REVIEW_LABELLED, REVIEW_DISCARDED, REVIEW_APPLIED = "pending", "labelled", "discarded", "applied"


class ReviewItem(Base):
    """A message the assistant did not understand well, redacted, for maintainers to label (bot.review).

    No conversation id: once redacted, an item is not linked to the person (docs/privacy.md).
    """

    __tablename__ = "review_items"
    __table_args__ = (UniqueConstraint("language", "text_hash", name="uq_review_language_text"),)

    id = Column(Integer, primary_key=True, autoincrement=True)
    language = Column(String(16), nullable=False, index=True)
    text = Column(EncryptedText, nullable=False)  # redacted
    text_hash = Column(String(64), nullable=False)  # of the normalised redacted text: merges duplicates
    predicted_intent = Column(String(64), nullable=True)
    confidence = Column(Integer, nullable=True)  # per cent
    source = Column(String(32), nullable=False)  # misunderstood | fallback | low_confidence
    count = Column(Integer, nullable=False, default=1)
    first_seen = Column(DateTime, nullable=False, default=utcnow)
    last_seen = Column(DateTime, nullable=False, default=utcnow)
    status = Column(String(16), nullable=False, default=REVIEW_PENDING, index=True)
    label = Column(String(64), nullable=True)
    reviewer = Column(String(64), nullable=True)
    reviewed_at = Column(DateTime, nullable=True)


class Setting(Base):
    """Small pieces of state the gateway keeps between runs (e.g. the review collector's cursor)."""

    __tablename__ = "gateway_state"

    key = Column(String(64), primary_key=True)
    value = Column(String(256), nullable=False)


class Service(Base):
    """An organisation in the service directory (imported from data/services/*.yml)."""

    __tablename__ = "services"

    id = Column(String(96), primary_key=True)
    country = Column(String(16), nullable=False, index=True)  # ISO code, or "international"
    organisation = Column(String(256), nullable=False)
    types = Column(String(256), nullable=False)  # comma-separated service types
    city = Column(String(128), nullable=True)  # English name; empty = country-wide
    address = Column(String(512), nullable=True)
    phone = Column(String(256), nullable=True)
    website = Column(String(512), nullable=True)
    languages = Column(String(128), nullable=False, default="")  # comma-separated ISO 639-1
    opening_hours = Column(String(256), nullable=True)
    cost = Column(String(128), nullable=True)
    confidentiality = Column(String(512), nullable=True)
    source_name = Column(String(256), nullable=False)
    source_url = Column(String(512), nullable=True)
    source_year = Column(Integer, nullable=True)
    source_accessed = Column(Integer, nullable=True)
    verified = Column(Date, nullable=True)  # empty: never checked against the organisation


class Database:
    """Engine and session factory for one URL; nothing connects before use.

    `keys` (a Keyring, or the DATA_KEYS string) makes the encrypted columns usable in this process.
    """

    def __init__(self, url: str, keys=None) -> None:
        self.url = url
        if keys is not None:
            configure(keys if isinstance(keys, Keyring) else Keyring.parse(_reveal(keys)))
        self._engine: Optional[Engine] = None
        self._sessions: Optional[sessionmaker] = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            # hide_parameters: a database error must not carry message text or addresses into a log.
            # No ping before every use (a round trip each time, 13% of the gateway's time under load): after a
            # database restart the first statement fails, SQLAlchemy drops the whole pool, and the caller's
            # retry (the worker's loop, the platform's webhook retry) gets a fresh connection.
            kwargs = {"future": True, "pool_pre_ping": self.url.startswith("sqlite"), "hide_parameters": True}
            if self.url.startswith("sqlite"):
                path = self.url.split("///", 1)[-1]
                if path and path != ":memory:":
                    Path(path).parent.mkdir(parents=True, exist_ok=True)
                kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            else:  # the worker runs up to 16 conversations and 16 send batches at once, plus requests
                kwargs.update(pool_size=20, max_overflow=20, pool_timeout=30)
            self._engine = create_engine(self.url, **kwargs)
            if self.url.startswith("sqlite"):
                event.listen(self._engine, "connect", _sqlite_pragmas)
        return self._engine

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error."""
        if self._sessions is None:
            self._sessions = sessionmaker(bind=self.engine, future=True, expire_on_commit=False)
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def ping(self) -> None:
        """Raises when the database does not answer."""
        from sqlalchemy import text

        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def upgrade(self) -> None:
        """Apply every migration (idempotent)."""
        from bot.migrations import upgrade

        upgrade(self.engine)
        from bot.privacy import encrypt_plaintext_rows

        encrypt_plaintext_rows(self)

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


def database_unavailable(exc: BaseException) -> bool:
    """The database could not be reached (restarting, connection dropped), as opposed to a bug."""
    from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError

    if isinstance(exc, (OperationalError, InterfaceError, DisconnectionError)):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


async def until_recorded(record: Callable[[], T], within: float, what: str,
                         stopping: Callable[[], bool] = lambda: False) -> T:
    """Run `record` (one database transaction, in a thread) until it succeeds, while the database is unreachable,
    for at most `within` seconds.

    For what must not be done twice when it is recorded late: a reply the platform has accepted, an
    answer Rasa has given. Forgetting it because the database was restarting would send the reply
    again, or ask Rasa again (failure test in `make bench`)."""
    deadline, delay = time.monotonic() + within, 0.2
    while True:
        try:
            return await asyncio.to_thread(record)
        except Exception as exc:
            if not database_unavailable(exc) or time.monotonic() + delay > deadline or stopping():
                raise
            log.warning("database unavailable; recording %s again in %.1fs", what, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


def _reveal(value) -> str:
    return value.reveal() if hasattr(value, "reveal") else str(value)


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # pragma: no cover - trivial
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()

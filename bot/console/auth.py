"""Console accounts and sessions.

- Passwords: argon2id (argon2-cffi), at least 12 characters; never logged or returned.
- Login: after MAX_FAILURES wrong passwords in a row the account is locked for LOCK_MINUTES
  (the answer is the same for unknown users, wrong passwords and locked accounts).
- Sessions: a fresh random token at every login (no session fixation); the database keeps only its
  SHA-256; the cookie is HttpOnly, SameSite=Strict, Secure (unless CONSOLE_SECURE_COOKIE=false) and
  limited to /console. Each session has its own CSRF token, required in `X-CSRF-Token` on every
  state-changing request.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import re
import secrets
from typing import Optional, Tuple

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, select

from bot.db import ConsoleSession, Counsellor, Database, utcnow

log = logging.getLogger(__name__)

ROLES = ("counsellor", "supervisor", "admin", "maintainer")  # maintainer: the review queue only
MAX_FAILURES = 5
LOCK_MINUTES = 15
MIN_PASSWORD = 12
COOKIE = "crossroads_console"
_USERNAME = re.compile(r"^[a-z0-9_.-]{3,64}$")
_hasher = PasswordHasher()
# Verifying against this when the user does not exist keeps the answer time the same.
_DUMMY_HASH = _hasher.hash("not-a-real-password-" + secrets.token_hex(8))


class AuthError(Exception):
    pass


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_counsellor(db: Database, username: str, password: str, role: str = "counsellor",
                      languages: str = "", display_name: str = "") -> Counsellor:
    username = username.strip().lower()
    if not _USERNAME.match(username):
        raise AuthError("username: 3-64 characters of a-z, 0-9, '.', '_' or '-'")
    if role not in ROLES:
        raise AuthError(f"role: one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise AuthError(f"password: at least {MIN_PASSWORD} characters")
    codes = ",".join(sorted({c.strip().lower() for c in languages.split(",") if c.strip()}))
    if codes and not re.fullmatch(r"[a-z]{2,3}(,[a-z]{2,3})*", codes):
        raise AuthError("languages: comma-separated language codes, e.g. 'ar,fr'")
    with db.session() as s:
        if s.scalars(select(Counsellor).where(Counsellor.username == username)).first() is not None:
            raise AuthError(f"a counsellor named {username!r} exists already")
        counsellor = Counsellor(username=username, display_name=display_name or username, role=role,
                                languages=codes, password_hash=_hasher.hash(password))
        s.add(counsellor)
        s.flush()
        return counsellor


def set_password(db: Database, username: str, password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AuthError(f"password: at least {MIN_PASSWORD} characters")
    with db.session() as s:
        counsellor = s.scalars(select(Counsellor).where(Counsellor.username == username.lower())).first()
        if counsellor is None:
            raise AuthError(f"no counsellor named {username!r}")
        counsellor.password_hash = _hasher.hash(password)
        counsellor.failed_logins, counsellor.locked_until = 0, None
        s.execute(delete(ConsoleSession).where(ConsoleSession.counsellor_id == counsellor.id))


def login(db: Database, username: str, password: str, hours: float) -> Tuple[Counsellor, str, str]:
    """Check the password; returns (counsellor, session token, csrf token) or raises AuthError.

    A failed attempt is committed before the error is raised (the lock-out must count it)."""
    now = utcnow()
    refused = False
    with db.session() as s:
        counsellor = s.scalars(select(Counsellor).where(Counsellor.username == (username or "").strip().lower())).first()
        if counsellor is None or not counsellor.active:
            _verify(_DUMMY_HASH, password)
            refused = True
        elif counsellor.locked_until is not None and counsellor.locked_until > now:
            _verify(_DUMMY_HASH, password)
            log.warning("console login refused: account locked counsellor=%s", counsellor.id)
            refused = True
        elif not _verify(counsellor.password_hash, password):
            counsellor.failed_logins += 1
            if counsellor.failed_logins >= MAX_FAILURES:
                counsellor.locked_until = now + dt.timedelta(minutes=LOCK_MINUTES)
                counsellor.failed_logins = 0
                log.warning("console account locked counsellor=%s", counsellor.id)
            refused = True
        else:
            counsellor.failed_logins, counsellor.locked_until = 0, None
            if _hasher.check_needs_rehash(counsellor.password_hash):
                counsellor.password_hash = _hasher.hash(password)
            token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
            s.execute(delete(ConsoleSession).where(ConsoleSession.expires_at < now))
            s.add(ConsoleSession(token_hash=_digest(token), counsellor_id=counsellor.id, csrf_token=csrf,
                                 expires_at=now + dt.timedelta(hours=hours)))
            log.info("console login counsellor=%s", counsellor.id)
    if refused:
        raise AuthError("wrong username or password")
    return counsellor, token, csrf


def _verify(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password or "")
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def session_of(db: Database, token: Optional[str]) -> Optional[Tuple[Counsellor, ConsoleSession]]:
    if not token or len(token) > 128:
        return None
    with db.session() as s:
        session = s.get(ConsoleSession, _digest(token))
        if session is None or session.expires_at <= utcnow():
            return None
        counsellor = s.get(Counsellor, session.counsellor_id)
        if counsellor is None or not counsellor.active:
            return None
        return counsellor, session


def csrf_ok(session: ConsoleSession, given: Optional[str]) -> bool:
    return bool(given) and hmac.compare_digest(session.csrf_token.encode(), given.encode())


def logout(db: Database, token: str) -> None:
    with db.session() as s:
        s.execute(delete(ConsoleSession).where(ConsoleSession.token_hash == _digest(token)))

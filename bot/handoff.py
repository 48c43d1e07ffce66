"""Cases for human counsellors: the queue, its rules and every change in the audit log.

States: a conversation is "with the bot" until a case opens (`waiting`); a counsellor claims it
(`assigned`: the bot is silent and Rasa is not called), may snooze it (`snoozed`: back in the queue at
`snoozed_until`, or when the person writes) and resolves it (`resolved`: the bot resumes and says so).
Priority: low, normal, high, urgent (safety). The queue is ordered by priority, then waiting time.
Language routing: for its first HANDOFF_LANGUAGE_WINDOW_MINUTES a non-urgent case is offered only to
counsellors who speak its language (supervisors see everything).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Tuple
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update

from bot import metrics
from bot.db import Conversation, Counsellor, Database, Handoff, HandoffEvent, HandoffNote, Message, utcnow

log = logging.getLogger(__name__)

OPEN_STATUSES = ("waiting", "assigned", "snoozed")
PRIORITIES = ("urgent", "high", "normal", "low")
PRIORITY_RANK = {p: i for i, p in enumerate(PRIORITIES)}
SAFETY_INTENTS = frozenset({
    "fear_of_harm", "self_harm", "violence", "trafficking", "unaccompanied_minor", "detention", "imminent_removal",
})
VULNERABILITY_OF = {"fear_of_harm": "fear_of_harm", "self_harm": "self_harm", "violence": "violence",
                    "trafficking": "trafficking", "unaccompanied_minor": "minor", "detention": "detention",
                    "imminent_removal": "imminent_removal"}


class HandoffError(Exception):
    def __init__(self, code: str, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.code, self.status = code, status


def _event(s, handoff_id: int, kind: str, detail: Optional[str] = None, actor: str = "system") -> None:
    s.add(HandoffEvent(handoff_id=handoff_id, kind=kind, detail=(detail or "")[:256] or None, actor=actor))


def request_handoff(db: Database, conversation_id: str, reason: str, urgent: bool,
                    case_card: Optional[Dict[str, Any]] = None, consent: Optional[str] = None) -> Handoff:
    """Open a case for the conversation, or update the open one (raise to urgent, add to its card)."""
    with db.session() as s:
        conv = s.get(Conversation, conversation_id)
        if conv is None:
            # The action server can be reached without the gateway (e.g. rasa shell): keep the request.
            conv = Conversation(id=conversation_id, channel="unknown")
            s.add(conv)
            s.flush()
        handoff = s.scalars(
            select(Handoff).where(Handoff.conversation_id == conversation_id, Handoff.status.in_(OPEN_STATUSES))
        ).first()
        priority = "urgent" if urgent else "normal"
        if handoff is None:
            handoff = Handoff(conversation_id=conversation_id, status="waiting", priority=priority,
                              reason=reason, urgent=urgent, language=conv.language,
                              consent=consent or ("urgent" if urgent else None),
                              case_card=json.dumps(case_card or {}, ensure_ascii=False))
            s.add(handoff)
            s.flush()
            _event(s, handoff.id, "created", f"{priority}:{reason}")
            if handoff.consent:
                _event(s, handoff.id, "consent", handoff.consent)
        else:
            if urgent and handoff.priority != "urgent":
                handoff.priority, handoff.urgent, handoff.reason = "urgent", True, reason
                _event(s, handoff.id, "priority", f"urgent:{reason}")
                if handoff.status == "snoozed":
                    handoff.status, handoff.snoozed_until = ("assigned" if handoff.assignee_id else "waiting"), None
            if case_card:
                merged = merge_cards(json.loads(handoff.case_card or "{}"), case_card)
                handoff.case_card = json.dumps(merged, ensure_ascii=False)
            if consent and not handoff.consent:
                handoff.consent = consent
                _event(s, handoff.id, "consent", consent)
            handoff.last_activity_at = utcnow()
        log.info("handoff requested handoff=%s priority=%s reason=%s", handoff.id, handoff.priority, reason)
        return handoff


def merge_cards(old: Dict[str, Any], new: Dict[str, Any]) -> Dict[str, Any]:
    merged = dict(old)
    for key, value in new.items():
        if isinstance(value, list):
            merged[key] = sorted(set(merged.get(key) or []) | set(value))
        elif value not in (None, "", [], {}):
            merged[key] = value
    return merged


def open_handoff(db: Database, conversation_id: str) -> Optional[Handoff]:
    with db.session() as s:
        return s.scalars(
            select(Handoff).where(Handoff.conversation_id == conversation_id, Handoff.status.in_(OPEN_STATUSES))
        ).first()


def held_by_counsellor(s, conversation_id: str) -> Optional[Handoff]:
    """The open case whose counsellor is holding the conversation (the bot stays silent)."""
    handoff = s.scalars(select(Handoff).where(Handoff.conversation_id == conversation_id,
                                              Handoff.status.in_(("assigned", "snoozed")),
                                              Handoff.assignee_id.isnot(None))).first()
    if handoff is not None and handoff.status == "snoozed":
        # The person wrote: the case comes back to its counsellor.
        handoff.status, handoff.snoozed_until = "assigned", None
        _event(s, handoff.id, "unsnoozed", "person wrote")
    if handoff is not None:
        handoff.last_activity_at = utcnow()
    return handoff


# -- the queue ---------------------------------------------------------------------------------------
def _languages(counsellor: Counsellor) -> List[str]:
    return [code.strip() for code in (counsellor.languages or "").split(",") if code.strip()]


def visible_to(handoff: Handoff, counsellor: Counsellor, window: dt.timedelta, now: dt.datetime) -> bool:
    if counsellor.role in ("supervisor", "admin") or handoff.assignee_id == counsellor.id:
        return True
    if handoff.priority == "urgent" or not handoff.language:
        return True
    return handoff.language in _languages(counsellor) or now - handoff.waiting_since >= window


def wake_snoozed(db: Database) -> int:
    now = utcnow()
    with db.session() as s:
        due = s.scalars(select(Handoff).where(Handoff.status == "snoozed", Handoff.snoozed_until <= now)).all()
        for handoff in due:
            handoff.status = "assigned" if handoff.assignee_id else "waiting"
            handoff.snoozed_until = None
            _event(s, handoff.id, "unsnoozed", "time")
        return len(due)


def queue(db: Database, counsellor: Counsellor, window: dt.timedelta) -> List[Handoff]:
    """Open cases this counsellor may see: urgent first, then by priority, then longest waiting."""
    wake_snoozed(db)
    now = utcnow()
    with db.session() as s:
        cases = s.scalars(select(Handoff).where(Handoff.status.in_(OPEN_STATUSES))).all()
    cases = [h for h in cases if visible_to(h, counsellor, window, now)]
    own = set(_languages(counsellor))
    return sorted(cases, key=lambda h: (PRIORITY_RANK.get(h.priority, 9), h.language not in own, h.waiting_since,
                                        h.id))


def position_in_queue(db: Database, handoff_id: int) -> int:
    """1 for the next case a counsellor will take."""
    with db.session() as s:
        me = s.get(Handoff, handoff_id)
        waiting = s.scalars(select(Handoff).where(Handoff.status == "waiting")).all()
    if me is None:
        return 0
    ahead = [h for h in waiting if (PRIORITY_RANK.get(h.priority, 9), h.waiting_since, h.id)
             < (PRIORITY_RANK.get(me.priority, 9), me.waiting_since, me.id)]
    return len(ahead) + 1


def expected_wait_minutes(db: Database, default: int, sample: int = 20) -> int:
    """The median wait of the last cases that were claimed; `default` before there are five."""
    with db.session() as s:
        rows = s.execute(select(Handoff.waiting_since, Handoff.claimed_at).where(Handoff.claimed_at.isnot(None))
                         .order_by(Handoff.claimed_at.desc()).limit(sample)).all()
    waits = sorted((claimed - since).total_seconds() / 60 for since, claimed in rows if claimed >= since)
    if len(waits) < 5:
        return default
    return max(1, round(waits[len(waits) // 2]))


# -- working hours ----------------------------------------------------------------------------------
_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


@dataclass(frozen=True)
class Hours:
    spans: Tuple[Tuple[int, dt.time, dt.time], ...]  # (weekday, start, end)
    zone: ZoneInfo

    @classmethod
    def parse(cls, text: str, zone: str) -> "Hours":
        spans = []
        for part in [p.strip() for p in text.split(";") if p.strip()]:
            match = re.fullmatch(r"([a-z]{3})(?:-([a-z]{3}))?\s+(\d{2}):(\d{2})-(\d{2}):(\d{2})", part.lower())
            if not match or match.group(1) not in _DAYS or (match.group(2) and match.group(2) not in _DAYS):
                raise ValueError(f"counsellor hours: cannot read {part!r} (e.g. 'mon-fri 09:00-17:00')")
            first = _DAYS.index(match.group(1))
            last = _DAYS.index(match.group(2)) if match.group(2) else first
            start = dt.time(int(match.group(3)), int(match.group(4)))
            end = dt.time(int(match.group(5)), int(match.group(6)))
            for day in range(first, last + 1):
                spans.append((day, start, end))
        return cls(tuple(spans), ZoneInfo(zone))

    def open_at(self, when: dt.datetime) -> bool:
        local = when.replace(tzinfo=dt.timezone.utc).astimezone(self.zone)
        return any(day == local.weekday() and start <= local.time() < end for day, start, end in self.spans)

    def next_opening(self, when: dt.datetime) -> Optional[dt.datetime]:
        """The next start of a working span (local time), within two weeks."""
        local = when.replace(tzinfo=dt.timezone.utc).astimezone(self.zone)
        for offset in range(15):
            day = (local + dt.timedelta(days=offset)).date()
            for weekday, start, _end in sorted(self.spans, key=lambda span: span[1]):
                if weekday == day.weekday():
                    candidate = dt.datetime.combine(day, start, tzinfo=self.zone)
                    if candidate > local:
                        return candidate
        return None


# -- what counsellors do ----------------------------------------------------------------------------
def claim(db: Database, handoff_id: int, counsellor: Counsellor) -> str:
    """Take a case; returns its conversation id. Of two counsellors claiming at once exactly one wins
    (one conditional UPDATE)."""
    now = utcnow()
    with db.session() as s:
        won = s.execute(update(Handoff).where(Handoff.id == handoff_id, Handoff.status.in_(("waiting", "snoozed")),
                                              Handoff.assignee_id.is_(None))
                        .values(status="assigned", assignee_id=counsellor.id, claimed_at=now, snoozed_until=None,
                                last_activity_at=now)).rowcount
        if not won:
            handoff = s.get(Handoff, handoff_id)
            if handoff is None:
                raise HandoffError("not_found", "no such case", 404)
            raise HandoffError("already_claimed", "someone else has this case")
        _event(s, handoff_id, "claimed", None, actor=counsellor.username)
        handoff = s.get(Handoff, handoff_id)
        metrics.HANDOFF_WAIT_SECONDS.observe(max((now - handoff.waiting_since).total_seconds(), 0.0),
                                             priority=handoff.priority)
        return handoff.conversation_id


def _owned(s, handoff_id: int, counsellor: Counsellor) -> Handoff:
    handoff = s.get(Handoff, handoff_id)
    if handoff is None:
        raise HandoffError("not_found", "no such case", 404)
    if handoff.status not in OPEN_STATUSES:
        raise HandoffError("closed", "this case is resolved")
    if handoff.assignee_id != counsellor.id and counsellor.role not in ("supervisor", "admin"):
        raise HandoffError("not_yours", "claim the case first", 403)
    return handoff


def transfer(db: Database, handoff_id: int, counsellor: Counsellor, to_username: str) -> None:
    with db.session() as s:
        handoff = _owned(s, handoff_id, counsellor)
        target = s.scalars(select(Counsellor).where(Counsellor.username == to_username,
                                                    Counsellor.active.is_(True))).first()
        if target is None:
            raise HandoffError("unknown_counsellor", "no active counsellor with that name", 400)
        handoff.assignee_id, handoff.status, handoff.last_activity_at = target.id, "assigned", utcnow()
        _event(s, handoff.id, "transferred", target.username, actor=counsellor.username)


def snooze(db: Database, handoff_id: int, counsellor: Counsellor, minutes: int) -> None:
    with db.session() as s:
        handoff = _owned(s, handoff_id, counsellor)
        handoff.status, handoff.snoozed_until = "snoozed", utcnow() + dt.timedelta(minutes=minutes)
        _event(s, handoff.id, "snoozed", f"{minutes} min", actor=counsellor.username)


def set_priority(db: Database, handoff_id: int, counsellor: Counsellor, priority: str) -> None:
    if priority not in PRIORITIES:
        raise HandoffError("bad_priority", "priority: low, normal, high or urgent", 400)
    with db.session() as s:
        handoff = s.get(Handoff, handoff_id)
        if handoff is None or handoff.status not in OPEN_STATUSES:
            raise HandoffError("not_found", "no such open case", 404)
        handoff.priority, handoff.urgent = priority, priority == "urgent"
        _event(s, handoff.id, "priority", priority, actor=counsellor.username)


def add_note(db: Database, handoff_id: int, counsellor: Counsellor, text: str) -> None:
    with db.session() as s:
        if s.get(Handoff, handoff_id) is None:
            raise HandoffError("not_found", "no such case", 404)
        s.add(HandoffNote(handoff_id=handoff_id, author_id=counsellor.id, text=text))
        _event(s, handoff_id, "note", None, actor=counsellor.username)


def reply(db: Database, handoff_id: int, counsellor: Counsellor, text: str, splitter=None) -> int:
    """A counsellor's message to the person: into the outbox of the person's channel."""
    with db.session() as s:
        handoff = _owned(s, handoff_id, counsellor)
        if handoff.status != "assigned" or handoff.assignee_id is None:
            raise HandoffError("not_claimed", "claim the case before replying")
        conv = s.get(Conversation, handoff.conversation_id)
        parts = splitter(text) if splitter else [text]
        last = 0
        for part in parts:
            row = Message(conversation_id=conv.id, direction="out", sender="counsellor", text=part, state="pending",
                          language=conv.language, kind="counsellor", author_id=counsellor.id)
            s.add(row)
            s.flush()
            last = row.id
        handoff.last_activity_at = utcnow()
        _event(s, handoff.id, "replied", None, actor=counsellor.username)
        return last


def resolve(db: Database, handoff_id: int, counsellor: Counsellor) -> Tuple[str, Optional[str]]:
    """Close the case; returns (conversation id, language) so the bot can say it is back."""
    with db.session() as s:
        handoff = _owned(s, handoff_id, counsellor)
        handoff.status, handoff.resolved_at, handoff.last_activity_at = "resolved", utcnow(), utcnow()
        handoff.snoozed_until = None
        _event(s, handoff.id, "resolved", None, actor=counsellor.username)
        conv = s.get(Conversation, handoff.conversation_id)
        return handoff.conversation_id, conv.language if conv else None


def mark_misunderstood(db: Database, message_id: int, counsellor: Counsellor, value: bool = True) -> str:
    with db.session() as s:
        message = s.get(Message, message_id)
        if message is None or message.direction != "in":
            raise HandoffError("not_found", "no such message from the person", 404)
        message.misunderstood = value
        handoff = s.scalars(select(Handoff).where(Handoff.conversation_id == message.conversation_id)
                            .order_by(Handoff.id.desc())).first()
        if handoff is not None:
            _event(s, handoff.id, "misunderstood" if value else "understood", str(message_id),
                   actor=counsellor.username)
        return message.conversation_id


def stats(db: Database, since: dt.datetime) -> Dict[str, Any]:
    """For supervisors: queue length, waiting times, cases handled, per language."""
    now = utcnow()
    with db.session() as s:
        open_cases = s.scalars(select(Handoff).where(Handoff.status.in_(OPEN_STATUSES))).all()
        handled = s.scalars(select(Handoff).where(Handoff.resolved_at.isnot(None), Handoff.resolved_at >= since)).all()
        claimed = s.scalars(select(Handoff).where(Handoff.claimed_at.isnot(None), Handoff.claimed_at >= since)).all()
    per_language: Dict[str, Dict[str, Any]] = {}

    def bucket(language: Optional[str]) -> Dict[str, Any]:
        return per_language.setdefault(language or "unknown", {"waiting": 0, "assigned": 0, "snoozed": 0,
                                                                "handled": 0, "longest_wait_minutes": 0.0})

    for case in open_cases:
        b = bucket(case.language)
        b[case.status] += 1
        if case.status == "waiting":
            b["longest_wait_minutes"] = max(b["longest_wait_minutes"],
                                            round((now - case.waiting_since).total_seconds() / 60, 1))
    for case in handled:
        bucket(case.language)["handled"] += 1
    waits = sorted((c.claimed_at - c.waiting_since).total_seconds() / 60 for c in claimed)
    return {
        "queue_length": sum(1 for c in open_cases if c.status == "waiting"),
        "urgent_waiting": sum(1 for c in open_cases if c.status == "waiting" and c.priority == "urgent"),
        "open_cases": len(open_cases),
        "handled_since": since.isoformat() + "Z",
        "cases_handled": len(handled),
        "median_wait_minutes": round(waits[len(waits) // 2], 1) if waits else None,
        "per_language": per_language,
    }


def counts(db: Database, conversation_ids: Iterable[str]) -> Dict[str, int]:
    ids = list(conversation_ids)
    if not ids:
        return {}
    with db.session() as s:
        rows = s.execute(select(Message.conversation_id, func.count(Message.id))
                         .where(Message.conversation_id.in_(ids)).group_by(Message.conversation_id)).all()
    return {cid: n for cid, n in rows}


# -- the case card ----------------------------------------------------------------------------------
_DATE = re.compile(r"\b(\d{1,2}[./-]\d{1,2}(?:[./-]\d{2,4})?|\d{4}-\d{2}-\d{2})\b")
_SOON = re.compile(r"\b(today|tonight|tomorrow|next week|aujourd'hui|demain|la semaine prochaine|hoy|mañana|"
                   r"la semana que viene|la próxima semana)\b|(اليوم|غدا|غداً|بكرة|الأسبوع القادم|امروز|فردا|هفته بعد|"
                   r"ሎሚ|ጽባሕ|ዝመጽእ ሰሙን)", re.IGNORECASE)


def deadlines_in(texts: Iterable[str]) -> List[str]:
    """Dates and 'tomorrow'-like words the person wrote (the words only, not their message)."""
    found: List[str] = []
    for text in texts:
        for match in list(_DATE.finditer(text or "")) + list(_SOON.finditer(text or "")):
            value = match.group(0)
            if value not in found:
                found.append(value)
    return found[:10]


def _code(value: Any) -> Any:
    return value.upper() if isinstance(value, str) and len(value) == 2 else value


def build_case_card(reason: str, intents: Iterable[str], user_texts: Iterable[str], facts: Dict[str, Any],
                    language: Optional[str]) -> Dict[str, Any]:
    """What a counsellor needs first: who, where, how urgent, by when, what the assistant already told."""
    intents = list(intents)
    vulnerabilities = {VULNERABILITY_OF[i] for i in intents if i in VULNERABILITY_OF}
    if facts.get("in_detention") is True:
        vulnerabilities.add("detention")
    if "ask_medical" in intents:
        vulnerabilities.add("medical")
    deadlines = deadlines_in(user_texts)
    if "imminent_removal" in intents and "removal date mentioned" not in deadlines:
        deadlines.insert(0, "removal date mentioned")
    return {
        "language": language,
        "reason": reason,
        "country_of_stay": _code(facts.get("country_of_stay")),
        "country_of_origin": _code(facts.get("nationality")),
        "situation": facts.get("situation"),
        "children": facts.get("children"),
        "vulnerabilities": sorted(vulnerabilities),
        "deadlines": deadlines,
        "eligibility": facts.get("eligibility") or [],
        "topics": sorted({i for i in intents if i.startswith("ask_")}),
    }

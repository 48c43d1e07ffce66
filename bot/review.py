"""The maintainers' review queue: what the assistant misunderstood, redacted, grouped, labelled.

Sources (only conversations whose person chose "keep": docs/privacy.md):
- messages a counsellor marked "the assistant misunderstood this" in the console;
- messages Rasa classified as `nlu_fallback` or with a top intent below REVIEW_CONFIDENCE (read from
  the tracker store's user events, after the last event collected).

Each text is redacted (`bot.redact`) before it is stored; duplicates (same language, same normalised
redacted text) are merged with a count. Items keep no conversation id. A maintainer labels an item
in the console or through `python -m bot nlu export` / `import`; `apply` writes labelled items
into `data/nlu/<language>.yml` under their intent, never twice. Unreviewed items go after
RETENTION_DAYS.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterable, List, Optional

import yaml
from sqlalchemy import and_, select

from bot.db import (REVIEW_APPLIED, REVIEW_DISCARDED, REVIEW_LABELLED, REVIEW_PENDING, Conversation, Message,
                    ReviewItem, Setting, utcnow)
from bot.languages import normalise
from bot.redact import redact
from bot.settings import ROOT

if TYPE_CHECKING:  # pragma: no cover
    from bot.db import Database
    from bot.tracker_store import TrackerStore

log = logging.getLogger(__name__)

CURSOR = "review_cursor"
OUT_OF_SCOPE = "out_of_scope"
DISCARD = "discard"
NLU_DIR = ROOT / "data" / "nlu"


def intents(domain_path: Path = ROOT / "domain.yml") -> List[str]:
    """Intents an item can be labelled with (not `inform`: button answers only)."""
    domain = yaml.safe_load(domain_path.read_text(encoding="utf-8"))
    return [i for i in domain["intents"] if isinstance(i, str) and i != "inform"]


def text_hash(language: str, redacted: str) -> str:
    return hashlib.sha256(f"{language}\x00{normalise(redacted)}".encode("utf-8")).hexdigest()


@dataclass
class Collected:
    added: int = 0
    merged: int = 0
    from_console: int = 0
    from_tracker: int = 0


def _add(s, language: str, raw: str, source: str, intent: Optional[str], confidence: Optional[float],
         report: Collected) -> int:
    redacted = redact(raw)
    digest = text_hash(language, redacted)
    item = s.scalars(select(ReviewItem).where(ReviewItem.language == language, ReviewItem.text_hash == digest)).first()
    now = utcnow()
    if item is not None:
        item.count += 1
        item.last_seen = now
        if source == "misunderstood":
            item.source = source  # a counsellor's mark outranks a low score
        report.merged += 1
        return item.id
    item = ReviewItem(language=language, text=redacted, text_hash=digest, predicted_intent=intent,
                      confidence=None if confidence is None else round(confidence * 100), source=source,
                      first_seen=now, last_seen=now)
    s.add(item)
    s.flush()
    report.added += 1
    return item.id


def _prediction(data: Dict) -> tuple:
    parse = data.get("parse_data") or {}
    ranking = [r for r in parse.get("intent_ranking") or [] if isinstance(r, dict)]
    top = parse.get("intent") or {}
    name, confidence = top.get("name"), top.get("confidence")
    if name == "nlu_fallback":  # the classifier's own best guess is next in the ranking
        best = next((r for r in ranking if r.get("name") != "nlu_fallback"), {})
        name, confidence = best.get("name"), best.get("confidence")
    return name, confidence, top.get("name") == "nlu_fallback"


def collect(db: "Database", tracker: Optional["TrackerStore"], threshold: float = 0.6) -> Collected:
    """Add new candidates to the queue (idempotent: a cursor and a mark remember what was taken)."""
    report = Collected()
    with db.session() as s:
        kept = select(Conversation.id).where(Conversation.storage == "kept")
        marked = s.scalars(select(Message).where(Message.misunderstood.is_(True), Message.review_item_id.is_(None),
                                                 Message.direction == "in", Message.conversation_id.in_(kept))).all()
        for message in marked:
            if not message.text:
                continue
            conv = s.get(Conversation, message.conversation_id)
            language = message.language or (conv.language if conv else None) or "en"
            intent, confidence = _tracker_prediction(tracker, message.conversation_id, message.text)
            message.review_item_id = _add(s, language, message.text, "misunderstood", intent, confidence, report)
            report.from_console += 1
        kept_ids = set(s.scalars(kept))
        cursor_row = s.get(Setting, CURSOR)
        cursor = int(cursor_row.value) if cursor_row else 0
        newest = cursor
        for event_id, sender, data in _user_events(tracker, cursor):
            newest = max(newest, event_id)
            if sender not in kept_ids:
                continue
            message = data.get("text") or ""
            if not message or message.startswith("/"):
                continue
            intent, confidence, fallback = _prediction(data)
            if not fallback and (confidence is None or confidence >= threshold):
                continue
            language = (data.get("metadata") or {}).get("language") or "en"
            _add(s, str(language), message, "fallback" if fallback else "low_confidence", intent, confidence, report)
            report.from_tracker += 1
        if newest != cursor:
            if cursor_row is None:
                s.add(Setting(key=CURSOR, value=str(newest)))
            else:
                cursor_row.value = str(newest)
    if report.added or report.merged:
        log.info("review queue: %s added, %s merged (console %s, tracker %s)", report.added, report.merged,
                 report.from_console, report.from_tracker)
    return report


def _user_events(tracker: Optional["TrackerStore"], after: int):
    return tracker.user_events(after=after) if tracker is not None else []


def _tracker_prediction(tracker: Optional["TrackerStore"], sender: str, message: str) -> tuple:
    """What Rasa predicted for this message of this conversation (the newest such turn)."""
    for _, _, event in (tracker.user_events(sender=sender) if tracker is not None else []):
        if event.get("text") == message:
            intent, confidence, _ = _prediction(event)
            return intent, confidence
    return None, None


# -- reviewing ----------------------------------------------------------------------------------------------
class ReviewError(ValueError):
    pass


def queue(db: "Database", language: Optional[str] = None, status: str = REVIEW_PENDING) -> List[ReviewItem]:
    """Items to review, most frequent first, grouped by language."""
    with db.session() as s:
        query = select(ReviewItem).where(ReviewItem.status == status)
        if language:
            query = query.where(ReviewItem.language == language)
        return list(s.scalars(query.order_by(ReviewItem.language, ReviewItem.count.desc(), ReviewItem.id)))


def decide(db: "Database", item_id: int, label: str, reviewer: str, known: Optional[Iterable[str]] = None) -> ReviewItem:
    """Label an item with an intent (or out_of_scope), or discard it."""
    known = set(known if known is not None else intents())
    if label != DISCARD and label not in known:
        raise ReviewError(f"unknown intent {label!r}")
    with db.session() as s:
        item = s.get(ReviewItem, item_id)
        if item is None:
            raise ReviewError(f"no review item {item_id}")
        if item.status == REVIEW_APPLIED:
            raise ReviewError(f"item {item_id} is already in the training data")
        item.status = REVIEW_DISCARDED if label == DISCARD else REVIEW_LABELLED
        item.label = None if label == DISCARD else label
        item.reviewer = reviewer[:64]
        item.reviewed_at = utcnow()
        return item


# -- YAML round trip ----------------------------------------------------------------------------------------
EXPORT_HEADER = """# Crossroads review queue (redacted). For each item set `label:` to an intent, `out_of_scope`,
# or `discard`; leave it empty to decide later. Then: python -m bot nlu import <this file>
# Intents: {intents}
"""


def export(db: "Database", path: Path, language: Optional[str] = None) -> int:
    items = queue(db, language)
    data = {"items": [{"id": i.id, "language": i.language, "text": i.text, "predicted": i.predicted_intent,
                       "confidence": i.confidence, "count": i.count, "source": i.source, "label": None}
                      for i in items]}
    path.write_text(EXPORT_HEADER.format(intents=", ".join(intents())) +
                    yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=120), encoding="utf-8")
    return len(items)


@dataclass
class Imported:
    labelled: int = 0
    discarded: int = 0
    skipped: int = 0
    errors: List[str] = field(default_factory=list)


def import_file(db: "Database", path: Path, reviewer: str) -> Imported:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ReviewError(f"{path}: not valid YAML: {exc}") from exc
    items = data.get("items") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ReviewError(f"{path}: expected `items:` as exported by `python -m bot nlu export`")
    result = Imported()
    known = set(intents())
    for entry in items:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), int):
            result.errors.append(f"an entry without a numeric id: {str(entry)[:60]}")
            continue
        label = entry.get("label")
        if label in (None, ""):
            result.skipped += 1
            continue
        try:
            decide(db, entry["id"], str(label), reviewer, known)
        except ReviewError as exc:
            result.errors.append(f"item {entry['id']}: {exc}")
            continue
        if label == DISCARD:
            result.discarded += 1
        else:
            result.labelled += 1
    return result


# -- into the training data ------------------------------------------------------------------------------------
@dataclass
class Applied:
    added: Dict[str, int] = field(default_factory=dict)  # language -> examples added
    duplicates: int = 0
    conflicts: List[str] = field(default_factory=list)


def apply(db: "Database", nlu_dir: Path = NLU_DIR) -> Applied:
    """Write labelled items into data/nlu/<language>.yml under their intent (no duplicates)."""
    result = Applied()
    with db.session() as s:
        items = s.scalars(select(ReviewItem).where(ReviewItem.status == REVIEW_LABELLED).order_by(ReviewItem.id)).all()
        by_language: Dict[str, List[ReviewItem]] = {}
        for item in items:
            by_language.setdefault(item.language, []).append(item)
        for language, group in by_language.items():
            path = nlu_dir / f"{language}.yml"
            if not path.exists():
                result.conflicts += [f"item {i.id}: no {path.name}" for i in group]
                continue
            existing = _existing_examples(path)
            additions: Dict[str, List[str]] = {}
            for item in group:
                key = normalise(item.text)
                if key in existing:
                    if existing[key] != item.label:
                        result.conflicts.append(f"item {item.id}: already an example of {existing[key]}")
                    else:
                        result.duplicates += 1
                        item.status = REVIEW_APPLIED
                    continue
                existing[key] = item.label
                additions.setdefault(item.label, []).append(item.text)
                item.status = REVIEW_APPLIED
            if additions:
                _append_examples(path, additions)
                result.added[language] = sum(len(v) for v in additions.values())
    return result


def _existing_examples(path: Path) -> Dict[str, str]:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    found = {}
    for block in data.get("nlu") or []:
        if isinstance(block, dict) and "intent" in block:
            for line in str(block.get("examples") or "").splitlines():
                line = line.strip()
                if line.startswith("- "):
                    found[normalise(line[2:].strip())] = block["intent"]
    return found


def _append_examples(path: Path, additions: Dict[str, List[str]]) -> None:
    """Insert examples at the end of each intent's block (keeping the file's layout); new blocks at the end."""
    lines = path.read_text(encoding="utf-8").split("\n")
    for intent, texts in additions.items():
        rendered = [f"    - {_yaml_line(t)}" for t in texts]
        start = next((i for i, l in enumerate(lines) if re.fullmatch(rf"- intent: {re.escape(intent)}\s*", l)), None)
        if start is None:
            while lines and not lines[-1].strip():
                lines.pop()
            lines += [f"- intent: {intent}", "  examples: |", *rendered, ""]
            continue
        end = start + 1
        while end < len(lines) and (lines[end].startswith("  ") or not lines[end].strip()):
            end += 1
        while end > start + 1 and not lines[end - 1].strip():
            end -= 1
        lines[end:end] = rendered
    path.write_text("\n".join(lines), encoding="utf-8")


def _yaml_line(text_: str) -> str:
    """One example line inside a `|` block: a single line, no leading/trailing space."""
    return re.sub(r"\s+", " ", text_).strip()


def purge_unreviewed(db: "Database", days: float) -> int:
    with db.session() as s:
        old = s.scalars(select(ReviewItem).where(and_(ReviewItem.status == REVIEW_PENDING,
                                                      ReviewItem.last_seen < utcnow() - dt.timedelta(days=days)))).all()
        for item in old:
            s.delete(item)
        return len(old)

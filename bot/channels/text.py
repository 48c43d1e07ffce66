"""Splitting answers to fit a platform: at sentence ends, never inside a word, text left intact.

Limits (characters): Telegram 4096 per message; WhatsApp 4096 for text, 1024 for the body of an
interactive message, at most 3 reply buttons (titles up to 20 characters) or a list of up to 10
rows (titles up to 24). See docs/channels.md for the sources.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional

# A sentence ends after . ! ? … and their Arabic-script, Ethiopic, Devanagari and CJK forms,
# followed by white space; a paragraph break is always a good place.
_SENTENCE_END = re.compile(r"(?<=[.!?…؟۔።፧।。！？])\s+")


@dataclass
class Part:
    text: str
    buttons: List[Dict[str, str]] = field(default_factory=list)


def _hard_split(text: str, limit: int) -> List[str]:
    """Split at white space (or anywhere, as the last resort) into pieces of at most `limit`."""
    pieces: List[str] = []
    while len(text) > limit:
        cut = text.rfind(" ", 0, limit + 1)
        if cut <= 0:
            cut = limit
        pieces.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text:
        pieces.append(text)
    return pieces


def split_text(text: str, limit: int) -> List[str]:
    """Pieces of at most `limit` characters, cut at paragraph, then sentence, then word boundaries."""
    if limit <= 0:
        raise ValueError("limit must be positive")
    text = text.strip()
    if len(text) <= limit:
        return [text] if text else []
    units: List[str] = []
    for paragraph in re.split(r"(\n\s*\n)", text):
        if not paragraph:
            continue
        if paragraph.strip() == "":
            units.append(paragraph)
            continue
        # Keep the white space after each sentence as it was: a line break between bullets stays one.
        pieces_ = re.split(f"({_SENTENCE_END.pattern})", paragraph)
        for i in range(0, len(pieces_), 2):
            units.append(pieces_[i] + (pieces_[i + 1] if i + 1 < len(pieces_) else ""))
    pieces: List[str] = []
    current = ""
    for unit in units:
        if len(current) + len(unit) <= limit:
            current += unit
            continue
        if current.strip():
            pieces.append(current.strip())
        current = ""
        if len(unit) > limit:
            hard = _hard_split(unit.strip(), limit)
            pieces.extend(hard[:-1])
            current = hard[-1] + " " if hard else ""
        else:
            current = unit.lstrip()
    if current.strip():
        pieces.append(current.strip())
    return pieces


def split_for(text: str, buttons: Optional[List[Dict[str, str]]], text_limit: int,
              body_limit: Optional[int] = None, buttons_per_message: Optional[int] = None,
              continuation: str = "…") -> List[Part]:
    """Parts to send in order: text pieces, with the buttons on the last (within `body_limit`).

    With more buttons than one message may carry, further parts carry the rest under a short
    `continuation` body.
    """
    buttons = list(buttons or [])
    body_limit = body_limit or text_limit
    if not buttons:
        return [Part(p) for p in split_text(text, text_limit)]
    pieces = split_text(text, text_limit)
    last = pieces.pop() if pieces else ""
    if len(last) > body_limit:
        tail = split_text(last, body_limit)
        pieces.extend(tail[:-1])
        last = tail[-1]
    parts = [Part(p) for p in pieces]
    size = buttons_per_message or len(buttons)
    groups = [buttons[i:i + size] for i in range(0, len(buttons), size)]
    parts.append(Part(last or continuation, groups[0]))
    parts.extend(Part(continuation, group) for group in groups[1:])
    return parts

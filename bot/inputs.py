"""What the gateway does to user input before Rasa sees it.

Rasa parses any text that starts with `/` as an intent with entities (`/restart`,
`/handoff{"x":1}`) on every channel. Users must not be able to do that, so:
- typed text has leading slashes removed (after mapping the few commands we support);
- button payloads are forwarded only when they are payloads the assistant itself offered.
Empty text, text over the size limit and control characters are handled here too.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Optional, Set

from bot.errors import InputRejected

# Explicit commands (Telegram style, also accepted on every other channel).
COMMANDS = {
    "start": "/greet",
    "help": "/greet",
    "language": "/change_language",
    "lang": "/change_language",
    "delete": "/delete_my_data",
    "stop": "/stop",
    "human": "/talk_to_human",
    "privacy": "/privacy",
}
_COMMAND = re.compile(r"^/([A-Za-z_]+)(?:@[A-Za-z0-9_]+)?\s*$")
# Telegram deep links arrive as "/start <parameter>"; the parameter is ignored.
_START = re.compile(r"^/start(?:@[A-Za-z0-9_]+)?\s+\S{1,64}$", re.IGNORECASE)
# Control characters except tab and newline; also lone surrogates and the BOM.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ufeff\ud800-\udfff]")


_SURROGATE = re.compile(r"[\ud800-\udfff]")


def storable(value):
    """JSON may carry lone surrogates (valid JSON, not valid UTF-8): they become U+FFFD, in nested
    lists and objects too, so that what we store can always be encoded."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8") if _SURROGATE.search(value) else value
    if isinstance(value, list):
        return [storable(v) for v in value]
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Prepared:
    """The message to send to Rasa and whether it came from the assistant (a payload)."""

    message: str
    trusted: bool


def clean_text(text: str, max_chars: int) -> str:
    """Normalise, drop control characters, refuse empty and oversize messages."""
    if not isinstance(text, str):
        raise InputRejected("not_text", "utter_input_empty")
    text = _CONTROL.sub("", unicodedata.normalize("NFC", text)).strip()
    if not text:
        raise InputRejected("empty", "utter_input_empty")
    if len(text) > max_chars:
        raise InputRejected("too_long", "utter_input_too_long", max_chars=max_chars)
    return text


def neutralise(text: str) -> str:
    """Remove the leading slashes that would make Rasa read text as an intent."""
    stripped = text
    while stripped.startswith("/") or stripped[:1].isspace():
        stripped = stripped[1:]
    return stripped


def prepare(text: Optional[str], payload: Optional[str], allowed_payloads: Set[str], max_chars: int) -> Prepared:
    """Turn what the user sent into what Rasa receives; raise InputRejected when nothing usable."""
    if payload is not None:
        if isinstance(payload, str) and payload in allowed_payloads:
            return Prepared(payload, trusted=True)
        text = payload if text is None else text  # an unknown payload is just text
    cleaned = clean_text(text if text is not None else "", max_chars)
    if _START.match(cleaned):
        return Prepared(COMMANDS["start"], trusted=True)
    command = _COMMAND.match(cleaned)
    if command and command.group(1).lower() in COMMANDS:
        return Prepared(COMMANDS[command.group(1).lower()], trusted=True)
    safe = neutralise(cleaned)
    if not safe:
        raise InputRejected("empty", "utter_input_empty")
    return Prepared(safe, trusted=False)

"""The conversation service: one place that decides what happens to a user's message.

For every channel: make the pseudonymous id, keep the conversation's language, clean and
neutralise the input, pass it to Rasa with the language in the metadata, store both sides for
the transcript, and return the replies. The language menu is offered on the first turn.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

from sqlalchemy import func, select

from bot.content import LANGUAGE_MENU, ContentStore
from bot.db import Conversation, Database, Message, utcnow
from bot.errors import InputRejected, RasaError, RasaUnavailable
from bot.inputs import prepare
from bot.privacy import pseudonym
from bot.rasa_client import RasaClient
from bot.settings import Settings

log = logging.getLogger(__name__)


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


class ConversationService:
    def __init__(self, settings: Settings, db: Database, content: ContentStore, rasa: RasaClient,
                 detect: Optional[Callable[[str], Optional[str]]] = None) -> None:
        self.settings = settings
        self.db = db
        self.content = content
        self.rasa = rasa
        self._detect = detect
        self._payloads = content.allowed_payloads()

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

    def language_of(self, conversation_id: str) -> Optional[str]:
        with self.db.session() as s:
            conv = s.get(Conversation, conversation_id)
            return conv.language if conv else None

    # -- one message ---------------------------------------------------------------------------
    async def handle(self, channel: str, user_id: str, text: Optional[str] = None,
                     payload: Optional[str] = None, language_hint: Optional[str] = None,
                     channel_message_id: Optional[str] = None) -> Outcome:
        cid = pseudonym(channel, user_id, self.settings.pseudonym_key)
        with self.db.session() as s:
            conv = s.get(Conversation, cid)
            if conv is None:
                conv = Conversation(id=cid, channel=channel)
                s.add(conv)
                s.flush()
            first_turn = s.scalar(select(func.count(Message.id)).where(
                Message.conversation_id == cid, Message.direction == "in")) == 0
            if conv.language is None:
                hint = self._supported(language_hint)
                conv.language = hint or self.settings.default_language
                conv.language_source = "suggested" if hint else "default"
            language, source = conv.language, conv.language_source

        try:
            prepared = prepare(text, payload, self._payloads, self.settings.max_message_chars)
        except InputRejected as rejected:
            log.info("input rejected conversation=%s reason=%s", cid, rejected.reason)
            rendered = self.content.render(rejected.response, language, rejected.arguments)
            return Outcome(cid, language, self._direction(language), [Reply(rendered.text)])

        outgoing: List[str] = []
        if not prepared.trusted and source in ("default", "suggested"):
            detected = self._detect_language(prepared.message)
            if detected and detected != language:
                # Tell Rasa first, so its `language` slot (which the NLG endpoint reads) follows.
                outgoing.append('/change_language' + json.dumps({"language": detected}, separators=(",", ":")))
                log.info("language detected conversation=%s language=%s", cid, detected)
            if detected:
                with self.db.session() as s:
                    conv = s.get(Conversation, cid)
                    conv.language, conv.language_source = detected, "detected"
                language = detected
        outgoing.append(prepared.message)

        self._store(cid, "in", "user", prepared.message if not prepared.trusted else "",
                    payload=prepared.message if prepared.trusted else None, channel_message_id=channel_message_id)
        replies: List[Reply] = []
        try:
            for message in outgoing:
                for answer in await self.rasa.send(cid, message, {"language": language, "channel": channel}):
                    replies.append(Reply(str(answer.get("text") or ""), _buttons(answer.get("buttons"))))
        except RasaUnavailable as exc:
            log.warning("rasa unavailable conversation=%s error=%s", cid, exc)
            replies = [self._reply("utter_answer_delayed", language)]
        except RasaError as exc:
            log.error("rasa error conversation=%s error=%s", cid, exc)
            replies = [self._reply("utter_answer_delayed", language)]

        current = self.language_of(cid)
        if current is None:
            # The person's data was erased during this turn: store nothing more.
            return Outcome(cid, language, self._direction(language), replies)
        language = current
        menu = self.content.language_buttons()
        if first_turn and not prepared.trusted and not any(r.buttons == menu for r in replies):
            replies.append(self._reply(LANGUAGE_MENU, language))
        for reply in replies:
            self._store(cid, "out", "bot", reply.text)
        with self.db.session() as s:
            conv = s.get(Conversation, cid)
            if conv is not None:
                conv.last_activity_at = utcnow()
        return Outcome(cid, language, self._direction(language), replies)

    def _direction(self, language: Optional[str]) -> str:
        return self.content.languages[self.content.resolve_language(language)].direction

    def _reply(self, response: str, language: str, **arguments: Any) -> Reply:
        rendered = self.content.render(response, language, arguments)
        return Reply(rendered.text, rendered.buttons)

    def _store(self, cid: str, direction: str, sender: str, text: str, payload: Optional[str] = None,
               channel_message_id: Optional[str] = None) -> None:
        with self.db.session() as s:
            s.add(Message(conversation_id=cid, direction=direction, sender=sender, text=text,
                          payload=payload, channel_message_id=channel_message_id))


def _buttons(raw: Any) -> List[Dict[str, str]]:
    if not isinstance(raw, list):
        return []
    return [{"title": str(b.get("title", "")), "payload": str(b.get("payload", ""))}
            for b in raw if isinstance(b, dict) and b.get("payload")]

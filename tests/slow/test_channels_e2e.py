"""Acceptance for Telegram and WhatsApp: 200 updates from 20 people on each platform, delivered
with duplicates and out of order, while the Rasa server is killed and started again.

Every distinct message must get exactly one set of replies, in order, in the person's language;
the person is told once that answers are delayed; Rasa processes each message once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List

import httpx
import pytest
import yaml
from sqlalchemy import select

from bot.content import ContentStore
from bot.db import Conversation, Database, Message
from bot.privacy import pseudonym
from bot.settings import ROOT
from tests.fakes.platforms import telegram_text, whatsapp_body, whatsapp_text

pytestmark = pytest.mark.slow

LANGUAGES = ["en", "fr", "ar", "es", "fa", "ti"]
# Intents whose answers are plain information (no form, no erasure, no handoff): good for counting.
INTENTS = ["ask_options", "ask_rights", "ask_avrr_process", "ask_money_support", "ask_reintegration",
           "ask_travel_documents", "ask_medical", "ask_family_children", "ask_asylum_appeal", "ask_change_mind"]
USERS, PER_USER = 20, 10
DANGER_WORDS = ("danger", "peligr", "خطر", "kill", "tuer", "matar")


def phrases(language: str) -> List[str]:
    """One training sentence (of four words or more) per intent, in the language."""
    data = yaml.safe_load((ROOT / "data" / "nlu" / f"{language}.yml").read_text(encoding="utf-8"))
    by_intent: Dict[str, List[str]] = {}
    for block in data["nlu"]:
        if "intent" in block:
            examples = [e[2:].strip() for e in block["examples"].splitlines() if e.startswith("- ")]
            # Not a question about danger: safety comes first, so it may rightly get the safety answer and a
            # counsellor ("can they send me back to a dangerous country"), which this count does not expect.
            by_intent[block["intent"]] = [e for e in examples if len(e.split()) >= 4 and "[" not in e
                                           and not any(w in e.lower() for w in DANGER_WORDS)]
    if language in ("ar", "fa", "ti"):  # the native script here; Latin-script forms are tested elsewhere
        by_intent = {k: [e for e in v if sum(c.isascii() for c in e) < len(e) / 2] for k, v in by_intent.items()}
    return [by_intent[intent][3] for intent in INTENTS]


def post_telegram(url: str, update: dict, secret: str) -> int:
    return httpx.post(f"{url}/telegram/webhook", json=update, timeout=30,
                      headers={"X-Telegram-Bot-Api-Secret-Token": secret}).status_code


def post_whatsapp(url: str, message: dict, app_secret: str) -> int:
    raw = json.dumps(whatsapp_body([message]), ensure_ascii=False).encode()
    signature = "sha256=" + hmac.new(app_secret.encode(), raw, hashlib.sha256).hexdigest()
    return httpx.post(f"{url}/whatsapp/webhook", content=raw, timeout=30,
                      headers={"X-Hub-Signature-256": signature, "content-type": "application/json"}).status_code


def received_texts(platforms, channel: str, address: str) -> List[str]:
    if channel == "telegram":
        return platforms.telegram_texts(int(address))
    texts = []
    for body in platforms.whatsapp_to(address):
        if body["type"] == "text":
            texts.append(body["text"]["body"])
        elif body["type"] == "interactive":
            texts.append(body["interactive"]["body"]["text"])
    return texts


def test_200_updates_per_platform_with_duplicates_and_a_rasa_restart(servers, platforms):
    url, settings = servers["url"], servers["settings"]
    content = ContentStore()
    rng = random.Random(4)
    people = []  # (channel, address, language, [(sequence, platform id, text)])
    for channel in ("telegram", "whatsapp"):
        for i in range(USERS):
            language = LANGUAGES[i % len(LANGUAGES)]
            address = str(7100000 + i) if channel == "telegram" else f"49151{7100000 + i}"
            texts = phrases(language)
            rng.shuffle(texts)
            people.append((channel, address, language,
                           [(j, f"{channel}-{i}-{j}", text) for j, text in enumerate(texts)]))
    base_update = 880000
    # Everyone chose "keep" (bot.privacy), so the transcript can be compared with what was sent; the
    # Telegram language comes from the platform's language_code, WhatsApp's from detection.
    seed = Database(settings.database_url, keys=settings.data_keys)
    with seed.session() as s:
        for channel, address, language, _ in people:
            s.add(Conversation(id=pseudonym(channel, address, settings.pseudonym_key), channel=channel,
                               language=language if channel == "telegram" else "en",
                               language_source="suggested" if channel == "telegram" else "default",
                               storage="kept"))
    seed.dispose()

    def deliver(person, j: int) -> int:
        channel, address, language, messages = person
        sequence, platform_id, text = messages[j]
        if channel == "telegram":
            update_id = base_update + int(address) % 1000 * 100 + sequence
            return post_telegram(url, telegram_text(update_id, int(address), text, language=language,
                                                    message_id=1000 + sequence), servers["env"]["TELEGRAM_WEBHOOK_SECRET"])
        # WhatsApp timestamps are seconds: one second apart keeps the person's order.
        return post_whatsapp(url, whatsapp_text(address, f"wamid.{platform_id}", text,
                                                timestamp=1_700_000_000 + sequence), servers["env"]["WHATSAPP_APP_SECRET"])

    def phase(indices: List[int], shuffle: bool) -> None:
        jobs = [(person, j) for person in people for j in indices]
        if shuffle:  # out-of-order delivery (only while nothing can be processed, so order is decided by us)
            rng.shuffle(jobs)
        with ThreadPoolExecutor(max_workers=8) as pool:
            if shuffle:
                statuses = list(pool.map(lambda job: deliver(*job), jobs))
            else:  # one person's messages in order, people in parallel
                statuses = list(pool.map(lambda person: [deliver(person, j) for j in indices], people))
                statuses = [s for group in statuses for s in group]
        assert set(statuses) == {200}

    db = Database(settings.database_url, keys=settings.data_keys)

    def settled() -> bool:
        with db.session() as s:
            cids = [pseudonym(c, a, settings.pseudonym_key) for c, a, _, _ in people]
            waiting = s.scalar(select(Message.id).where(Message.conversation_id.in_(cids),
                                                        Message.state.in_(["pending"])).limit(1))
            return waiting is None

    # 1. Rasa up: the first three messages of everyone, each delivered twice.
    phase([0, 1, 2], shuffle=False)
    phase([0, 1], shuffle=True)  # duplicates of what was already answered
    assert platforms.wait_for(settled, timeout=180, interval=0.5)
    # 2. Rasa killed: four more each, shuffled and with duplicates; the gateway stores them.
    servers.stop("rasa")
    phase([3, 4, 5, 6], shuffle=True)
    phase([3, 5], shuffle=True)
    # 3. Rasa starting again: the rest, then duplicates of everything.
    servers.start("rasa")
    restarted = time.monotonic()
    phase([7, 8, 9], shuffle=False)
    phase(list(range(PER_USER)), shuffle=True)
    servers.wait_ready(timeout=240)
    ready = time.monotonic() - restarted

    assert platforms.wait_for(settled, timeout=300, interval=0.5), "messages still waiting after 5 minutes"
    drained = time.monotonic() - restarted
    time.sleep(1.5)  # anything sent twice would show up now

    delayed = {lang: content.render("utter_answer_delayed", lang).text for lang in LANGUAGES}
    menus = {lang: content.render("utter_language_menu", lang).text for lang in LANGUAGES}
    arguments = {"retention_days": 30, "minimal_minutes": 30}  # the privacy notice's settings
    language_texts = {lang: {content.render(key, lang, arguments).text for key in content.languages["en"].responses}
                      for lang in LANGUAGES}
    totals = {"messages": 0, "replies": 0}
    rasa = httpx.Client(base_url=f"http://127.0.0.1:{servers['rasa_port']}", timeout=30)
    with db.session() as s:
        for channel, address, language, messages in people:
            cid = pseudonym(channel, address, settings.pseudonym_key)
            conv = s.get(Conversation, cid)
            assert conv.address == address and conv.language == language, (channel, address, conv.language)
            inbound = s.scalars(select(Message).where(Message.conversation_id == cid, Message.direction == "in")
                                .order_by(Message.sequence, Message.id)).all()
            # Stored once per distinct message, all answered, in the platform's order.
            assert [m.text for m in inbound] == [text for _, _, text in messages], (channel, address)
            assert all(m.state == "done" for m in inbound)
            outbound = s.scalars(select(Message).where(Message.conversation_id == cid, Message.direction == "out")
                                 .order_by(Message.id)).all()
            assert all(m.state == "sent" for m in outbound), [(m.state, m.error) for m in outbound]
            order = {m.id: k for k, m in enumerate(inbound)}
            answered = [order[m.reply_to] for m in outbound if m.kind != "delay_notice"]
            assert answered == sorted(answered) and set(answered) == set(range(PER_USER)), (channel, address)
            # What reached the platform is exactly the outbox, in order: nothing lost, nothing twice.
            texts = received_texts(platforms, channel, address)
            assert texts == [m.text for m in outbound], (channel, address)
            assert texts.count(delayed[language]) == 1  # told once while Rasa was down
            for text in texts:  # every answer in the person's language
                # A long answer may arrive in parts (WhatsApp's interactive body holds 1024 characters).
                # "…" starts the rest of a button list split over two WhatsApp messages (a list holds 10 rows).
                assert text in language_texts[language] or text in (menus[language], "…") or \
                    any(text in full for full in language_texts[language]), (language, text[:60])
            # Rasa saw each message once.
            tracker = rasa.get(f"/conversations/{cid}/tracker",
                               params={"token": settings.rasa_token.reveal()}).json()
            seen = [e["text"] for e in tracker["events"] if e["event"] == "user"
                    and not (e.get("text") or "").startswith("/")]
            assert seen == [text for _, _, text in messages], (channel, address)
            totals["messages"] += len(inbound)
            totals["replies"] += len(outbound)
    db.dispose()
    assert totals["messages"] == 2 * USERS * PER_USER
    print(f"\nchannels e2e: {totals['messages']} distinct messages, {totals['replies']} replies, all once, in order; "
          f"Rasa ready {ready:.0f} s after restart, every waiting message answered {drained:.0f} s after restart")

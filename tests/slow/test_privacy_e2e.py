"""Privacy end to end, with the real gateway, Rasa and action server, Telegram through the fake Bot API.

A person writes (with their name in the Telegram profile), chooses to keep their messages, says they
fear for their life (urgent case), a counsellor claims, writes a note and a reply, and resolves; the
person asks "what do you keep about me", then "delete my data" and confirms. Afterwards no row of any
gateway table and no Rasa tracker event mentions the person, and no log line of any process (the
gateway runs at DEBUG) contains their text, name, chat id or the counsellor's note and reply.
"""

from __future__ import annotations

import json
import sqlite3
import time

import httpx
import pytest
from sqlalchemy import select

from bot.console.auth import COOKIE, create_counsellor
from bot.content import ContentStore
from bot.db import Base, Database, Handoff
from bot.privacy import pseudonym
from bot.settings import Secret
from tests.fakes.platforms import _maybe_json, telegram_callback, telegram_text

pytestmark = pytest.mark.slow

CHAT = 8890001
NAME = "Zainabmarker"
PASSWORD = "a long console password 43"
SECRETS_SAID = ["my phone is +32 470 99 88 77 and I sleep at Rue Secretmarker 17",
                "they will kill me if i go back, the Talibmarker militia knows my village"]
COUNSELLOR_NOTE = "Notemarker: lives with cousin Khaledmarker"
COUNSELLOR_REPLY = "Replymarker: are you safe tonight?"


def post_update(servers, update):
    r = httpx.post(f"{servers['url']}/telegram/webhook", json=update, timeout=30,
                   headers={"X-Telegram-Bot-Api-Secret-Token": servers["env"]["TELEGRAM_WEBHOOK_SECRET"]})
    assert r.status_code == 200, r.text


def say(servers, update_id, text):
    update = telegram_text(update_id, CHAT, text)
    update["message"]["from"]["first_name"] = NAME
    update["message"]["chat"]["first_name"] = NAME
    post_update(servers, update)


def press(servers, platforms, update_id, payload):
    """Press the newest button whose payload is `payload` (the gateway's callback data for it)."""
    for call in reversed(platforms.sent("telegram", "sendMessage")):
        if int(call.body.get("chat_id")) != CHAT:
            continue
        markup = _maybe_json(call.body.get("reply_markup")) or {}
        for row in markup.get("inline_keyboard", []):
            for button in row:
                if button.get("callback_data", "").startswith("b:"):
                    rendered = button["callback_data"]
                    if button_payload(servers, rendered) == payload:
                        update = telegram_callback(update_id, CHAT, rendered)
                        update["callback_query"]["from"]["first_name"] = NAME
                        post_update(servers, update)
                        return
    raise AssertionError(f"no button {payload} was offered")


def button_payload(servers, data):
    _, row_id, index = data.split(":")
    db = Database(servers["settings"].database_url, keys=servers["settings"].data_keys)
    from bot.db import Message

    with db.session() as s:
        row = s.get(Message, int(row_id))
        buttons = json.loads(row.buttons) if row is not None and row.buttons else []
    db.dispose()
    return buttons[int(index)]["payload"] if int(index) < len(buttons) else None


def wait_text(platforms, text, after=0, timeout=30):
    assert platforms.wait_for(lambda: any(text in t for t in platforms.telegram_texts(CHAT)[after:]),
                              timeout=timeout), (text[:60], platforms.telegram_texts(CHAT)[after:])


def test_keep_handoff_access_erasure_and_clean_logs(servers, platforms):
    settings = servers["settings"]
    content = ContentStore()
    cid = pseudonym("telegram", str(CHAT), Secret(servers["env"]["PSEUDONYM_KEY"]))
    db = Database(settings.database_url, keys=settings.data_keys)
    create_counsellor(db, "karim", PASSWORD, role="counsellor", languages="en")

    # 1. First contact: the answer, the language menu and the privacy notice; the person keeps.
    say(servers, 990001, "hello")
    notice = content.render("utter_privacy_notice", "en", {"retention_days": 30, "minimal_minutes": 30}).text
    wait_text(platforms, notice)
    press(servers, platforms, 990002, "/privacy_keep")
    wait_text(platforms, content.render("utter_privacy_kept", "en", {"retention_days": 30}).text)
    count = len(platforms.telegram_texts(CHAT))
    say(servers, 990003, SECRETS_SAID[0])
    assert platforms.wait_for(lambda: len(platforms.telegram_texts(CHAT)) > count, timeout=30)

    # 2. Danger: the safety answer and an urgent case; a counsellor claims, notes, replies, resolves.
    say(servers, 990004, SECRETS_SAID[1])
    wait_text(platforms, content.render("utter_safety_fear_of_harm", "en").text)
    with db.session() as s:
        case_id = s.scalars(select(Handoff.id).where(Handoff.conversation_id == cid)).one()
    console = httpx.Client(base_url=servers["url"], timeout=30)
    login = console.post("/console/api/login", json={"username": "karim", "password": PASSWORD})
    token = login.headers["set-cookie"].split(";")[0].split("=", 1)[1]
    headers = {"X-CSRF-Token": login.json()["csrf"], "Cookie": f"{COOKIE}={token}"}
    for path, body in [("claim", {}), ("notes", {"text": COUNSELLOR_NOTE}), ("reply", {"text": COUNSELLOR_REPLY}),
                       ("resolve", {})]:
        r = console.post(f"/console/api/cases/{case_id}/{path}", json=body, headers=headers)
        assert r.status_code == 200, (path, r.text)
    wait_text(platforms, COUNSELLOR_REPLY)
    wait_text(platforms, content.render("utter_handoff_resolved", "en").text)

    # 3. "What do you keep about me": what the gateway holds, in the person's language.
    count = len(platforms.telegram_texts(CHAT))
    say(servers, 990005, "what do you keep about me")
    assert platforms.wait_for(lambda: any("Telegram" in t and "keep for 30 days" in t
                                          for t in platforms.telegram_texts(CHAT)[count:]), timeout=30), \
        platforms.telegram_texts(CHAT)[count:]

    # 4. "Delete my data", confirmed.
    say(servers, 990006, "delete my data")
    wait_text(platforms, content.render("utter_delete_data_confirm", "en").text, after=count)
    press(servers, platforms, 990007, "/affirm")
    wait_text(platforms, content.render("utter_data_deleted", "en").text, after=count)
    time.sleep(1.0)

    # Nothing about the person is left in any table of the gateway database...
    needles = [cid, str(CHAT), NAME, COUNSELLOR_NOTE, COUNSELLOR_REPLY, "Secretmarker", "Talibmarker"]
    left = []
    with db.session() as s:
        for table in Base.metadata.sorted_tables:
            for row in s.execute(select(table)).all():
                flat = " ".join(str(v) for v in row)
                left += [(table.name, n) for n in needles if n in flat]
    # ...(encrypted columns decrypt through the models: the ciphertext never contains the needles anyway)
    from bot.db import Conversation, HandoffNote, Message

    with db.session() as s:
        left += [("messages", m.id) for m in s.scalars(select(Message)) if any(n in (m.text or "") for n in needles)]
        left += [("handoff_notes", n.id) for n in s.scalars(select(HandoffNote)) if "Notemarker" in n.text]
        left += [("conversations", c.id) for c in s.scalars(select(Conversation)) if c.id == cid]
    # ...nor in Rasa's tracker store.
    tracker = sqlite3.connect(settings.tracker_store_url.split("///", 1)[1])
    events = tracker.execute("SELECT COUNT(*) FROM events WHERE sender_id = ?", (cid,)).fetchone()[0]
    tracker.close()
    db.dispose()
    assert left == [] and events == 0, (left, events)

    # No log line of any process carries what the person or the counsellor wrote, their name or chat id.
    time.sleep(0.5)
    leaks = []
    for name in ("gateway", "rasa", "actions"):
        for number, line in enumerate((servers["work"] / f"{name}.log").read_text(errors="replace").splitlines()):
            for needle in [str(CHAT), NAME, COUNSELLOR_NOTE, COUNSELLOR_REPLY, "Secretmarker", "Talibmarker",
                           "470 99 88 77", "what do you keep about me"]:
                if needle in line:
                    leaks.append((name, number, needle))
    assert leaks == []
    secrets_ = [servers["env"][k] for k in ("RASA_TOKEN", "NLG_TOKEN", "PSEUDONYM_KEY", "DATA_KEYS",
                                            "TELEGRAM_WEBHOOK_SECRET", "WHATSAPP_ACCESS_TOKEN", "WHATSAPP_APP_SECRET",
                                            "WHATSAPP_VERIFY_TOKEN", "TELEGRAM_BOT_TOKEN")]
    for name in ("gateway", "rasa", "actions"):
        text = (servers["work"] / f"{name}.log").read_text(errors="replace")
        assert [k for k in secrets_ if k in text] == [], name
    debug_lines = sum(1 for line in (servers["work"] / "gateway.log").read_text(errors="replace").splitlines()
                      if line.startswith("DEBUG"))
    assert debug_lines > 0  # the gateway really ran at DEBUG

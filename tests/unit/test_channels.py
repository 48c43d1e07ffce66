"""Telegram and WhatsApp through the gateway, against a local fake of each platform's HTTP API.

The gateway runs for real (Starlette app with its worker); Rasa is the in-process fake from
tests/conftest.py. Every test checks that nothing is lost and nothing is sent twice.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from bot.app import create_app
from bot.db import Conversation, Message
from bot.privacy import pseudonym
from bot.settings import load_settings
from tests.fakes.platforms import (telegram_callback, telegram_media, telegram_text,
                                   whatsapp_body, whatsapp_reply, whatsapp_status, whatsapp_text)

from tests.conftest import APP_SECRET, SECRET, TG, VERIFY  # noqa: E402


def signed(body: dict, secret: str = APP_SECRET):
    raw = json.dumps(body, ensure_ascii=False).encode()
    signature = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return raw, {"X-Hub-Signature-256": signature, "content-type": "application/json"}


def keep(gateway, channel: str, user_id: str) -> None:
    """The person chose "keep" (bot.privacy): their transcript stays, so tests can read reply text."""
    from bot.db import Conversation

    cid = pseudonym(channel, user_id, gateway.app.state.gateway.settings.pseudonym_key)
    with gateway.db.session() as s:
        s.add(Conversation(id=cid, channel=channel, language="en", language_source="default", storage="kept"))


def rows(db, **where):
    with db.session() as s:
        query = select(Message)
        for key, value in where.items():
            query = query.where(getattr(Message, key) == value)
        return s.scalars(query.order_by(Message.id)).all()


# -- Telegram ------------------------------------------------------------------------------------
def test_webhook_registration_carries_the_secret(gateway, platforms):
    assert platforms.wait_for(lambda: platforms.sent("telegram", "setWebhook"))
    call = platforms.sent("telegram", "setWebhook")[0]
    assert call.body["url"] == "https://bot.example.org/telegram/webhook"
    assert call.body["secret_token"] == SECRET


@pytest.mark.parametrize("headers", [{}, {"X-Telegram-Bot-Api-Secret-Token": "wrong-secret-0123456789"}])
def test_telegram_webhook_refuses_a_missing_or_wrong_secret(gateway, headers, fake_rasa):
    response = gateway.post("/telegram/webhook", json=telegram_text(1, 501, "hello"), headers=headers)
    assert response.status_code == 403
    assert rows(gateway.db) == [] and fake_rasa.received == []


def test_telegram_text_is_answered_once_with_a_pseudonym(gateway, platforms, fake_rasa, channel_settings):
    update = telegram_text(10, 502, "hello there")
    for _ in range(3):  # Telegram delivers again when it did not see our 200 in time
        assert gateway.post("/telegram/webhook", json=update, headers=TG).status_code == 200
    assert platforms.wait_for(lambda: len(platforms.telegram_texts(502)) >= 2)
    time.sleep(0.8)
    texts = platforms.telegram_texts(502)
    assert texts[0] == "echo:hello there"
    assert texts.count("echo:hello there") == 1
    assert [r["message"] for r in fake_rasa.received] == ["hello there"]
    assert fake_rasa.received[0]["sender"] == pseudonym("telegram", "502", channel_settings.pseudonym_key)
    assert "502" not in json.dumps(fake_rasa.received)


def test_rasa_down_then_up_answers_everything_once_in_order(gateway, platforms, fake_rasa, content):
    fake_rasa.down = True
    for i in range(5):
        gateway.post("/telegram/webhook", json=telegram_text(100 + i, 503, f"message {i}", language="fr"), headers=TG)
    delayed = content.render("utter_answer_delayed", "fr").text
    assert platforms.wait_for(lambda: delayed in platforms.telegram_texts(503))
    time.sleep(1.0)
    fake_rasa.down = False
    expected = [delayed] + [f"echo:message {i}" for i in range(5)]
    assert platforms.wait_for(lambda: len(platforms.telegram_texts(503)) >= len(expected) + 1, timeout=30)
    time.sleep(0.8)
    first_contact = {content.render(k, "fr", {"retention_days": 30, "minimal_minutes": 30}).text
                     for k in ("utter_language_menu", "utter_privacy_notice")}
    texts = [t for t in platforms.telegram_texts(503) if t not in first_contact]
    assert texts == expected  # told once, each answered once, in order
    assert [r["message"] for r in fake_rasa.received] == [f"message {i}" for i in range(5)]


def test_a_reply_sent_while_the_database_restarts_is_recorded_later_not_sent_again(gateway, platforms, fake_rasa,
                                                                                    monkeypatch):
    from sqlalchemy.exc import OperationalError

    from bot.db import OUT_SENT

    worker = gateway.app.state.gateway.worker
    mark, failures = worker._mark, []

    def flaky_mark(message_id, state, error=None):
        if state == OUT_SENT and len(failures) < 3:
            failures.append(message_id)
            raise OperationalError("UPDATE messages", {}, Exception("server closed the connection"))
        return mark(message_id, state, error)

    monkeypatch.setattr(worker, "_mark", flaky_mark)
    gateway.post("/telegram/webhook", json=telegram_text(150, 512, "are you there"), headers=TG)
    assert platforms.wait_for(lambda: "echo:are you there" in platforms.telegram_texts(512))
    time.sleep(2.5)  # past the retries (0.2 + 0.4 + 0.8 s) and the worker's next polls
    assert len(failures) == 3
    assert platforms.telegram_texts(512).count("echo:are you there") == 1
    answered = [r for r in rows(gateway.db, direction="out") if r.reply_to is not None]
    assert answered and all(r.state == OUT_SENT for r in answered)


def test_an_answer_given_while_the_database_restarts_is_recorded_later_rasa_is_not_asked_again(
        gateway, platforms, fake_rasa, monkeypatch):
    from sqlalchemy.exc import OperationalError

    service = gateway.app.state.gateway.service
    finish, failures = service._finish, []

    def flaky_finish(*args, **kwargs):
        if len(failures) < 2:
            failures.append(1)
            raise OperationalError("UPDATE messages", {}, Exception("server closed the connection"))
        return finish(*args, **kwargs)

    monkeypatch.setattr(service, "_finish", flaky_finish)
    gateway.post("/telegram/webhook", json=telegram_text(160, 513, "still there"), headers=TG)
    assert platforms.wait_for(lambda: "echo:still there" in platforms.telegram_texts(513))
    time.sleep(1.5)
    assert len(failures) == 2
    assert [r["message"] for r in fake_rasa.received] == ["still there"]
    assert platforms.telegram_texts(513).count("echo:still there") == 1


def test_out_of_order_delivery_is_answered_in_telegram_order(gateway, platforms, fake_rasa):
    fake_rasa.down = True
    for update_id in (203, 201, 202):
        gateway.post("/telegram/webhook", json=telegram_text(update_id, 504, f"u{update_id}"), headers=TG)
    time.sleep(0.6)
    fake_rasa.down = False
    assert platforms.wait_for(lambda: "echo:u203" in platforms.telegram_texts(504), timeout=30)
    assert [r["message"] for r in fake_rasa.received] == ["u201", "u202", "u203"]


def test_429_retry_after_and_5xx_are_retried_without_duplicates(gateway, platforms, fake_rasa):
    platforms.fail_next("telegram", 429, retry_after=1)
    platforms.fail_next("telegram", 502)
    start = time.monotonic()
    keep(gateway, "telegram", "505")
    gateway.post("/telegram/webhook", json=telegram_text(300, 505, "slow down"), headers=TG)
    assert platforms.wait_for(lambda: "echo:slow down" in platforms.telegram_texts(505)
                              and len(platforms.sent("telegram", "sendMessage")) >= 3, timeout=30)
    attempts = [c for c in platforms.sent("telegram", "sendMessage") if c.body.get("text") == "echo:slow down"]
    assert len(attempts) == 3  # 429, 502, then delivered
    assert attempts[1].at - attempts[0].at >= 0.95  # waited for retry_after
    time.sleep(0.8)
    delivered = rows(gateway.db, direction="out", state="sent")
    assert [r.text for r in delivered].count("echo:slow down") == 1
    assert time.monotonic() - start < 20


def test_a_permanent_refusal_is_recorded_not_retried_forever(gateway, platforms, fake_rasa):
    platforms.fail_next("telegram", 403)
    keep(gateway, "telegram", "506")
    gateway.post("/telegram/webhook", json=telegram_text(310, 506, "blocked"), headers=TG)
    assert platforms.wait_for(lambda: any(r.state == "failed" for r in rows(gateway.db, direction="out")))
    failed = [r for r in rows(gateway.db, direction="out") if r.state == "failed"]
    assert failed[0].error == "forbidden" and failed[0].text == "echo:blocked"


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b"[]", b'{"update_id": "x"}'])
def test_malformed_telegram_bodies_are_refused_and_nothing_is_stored(gateway, body):
    response = gateway.post("/telegram/webhook", content=body, headers={**TG, "content-type": "application/json"})
    assert response.status_code == 400
    assert rows(gateway.db) == []


def test_unknown_update_types_and_groups_are_ignored(gateway, fake_rasa):
    poll_answer = {"update_id": 400, "poll_answer": {"poll_id": "1", "option_ids": [0],
                                                     "user": {"id": 7, "is_bot": False, "first_name": "X"}}}
    group = telegram_text(401, -1007, "hello group", chat_type="group")
    for update in (poll_answer, group):
        response = gateway.post("/telegram/webhook", json=update, headers=TG)
        assert response.status_code == 200 and response.json()["ignored"] is True
    assert rows(gateway.db) == [] and fake_rasa.received == []


@pytest.mark.parametrize("kind", ["voice", "photo", "sticker", "document", "contact"])
def test_media_gets_a_clear_reply_in_the_users_language(gateway, platforms, fake_rasa, content, kind):
    gateway.post("/telegram/webhook", json=telegram_media(500, 507, kind, language="es"), headers=TG)
    expected = content.render("utter_unsupported_media", "es").text
    assert platforms.wait_for(lambda: expected in platforms.telegram_texts(507))
    assert fake_rasa.received == []


def test_a_shared_location_is_not_stored(gateway, platforms, content):
    gateway.post("/telegram/webhook", json=telegram_media(510, 508, "location", language="fr"), headers=TG)
    expected = content.render("utter_location_received", "fr").text
    assert platforms.wait_for(lambda: expected in platforms.telegram_texts(508))
    stored = json.dumps([(r.text, r.payload) for r in rows(gateway.db)])
    assert "50.85" not in stored and "4.35" not in stored


def test_buttons_become_an_inline_keyboard_and_a_press_sends_the_payload(gateway, platforms, fake_rasa):
    fake_rasa.answer = lambda body: [{"text": "Pick one", "buttons": [
        {"title": "Talk to a person", "payload": "/talk_to_human"},
        {"title": "Country", "payload": '/inform{"country_of_stay":"Deutschland-with-a-very-long-name"}'}]}]
    gateway.post("/telegram/webhook", json=telegram_text(600, 509, "menu please"), headers=TG)
    assert platforms.wait_for(lambda: "Pick one" in platforms.telegram_texts(509))
    call = [c for c in platforms.sent("telegram", "sendMessage") if c.body.get("text") == "Pick one"][0]
    keyboard = call.body["reply_markup"]["inline_keyboard"]
    data = [button["callback_data"] for row in keyboard for button in row]
    assert [button["text"] for row in keyboard for button in row] == ["Talk to a person", "Country"]
    assert all(len(d.encode()) <= 64 for d in data)
    fake_rasa.answer = lambda body: [{"text": "ok"}]
    gateway.post("/telegram/webhook", json=telegram_callback(601, 509, data[1]), headers=TG)
    assert platforms.wait_for(lambda: len(fake_rasa.received) == 2)
    assert fake_rasa.received[1]["message"] == '/inform{"country_of_stay":"Deutschland-with-a-very-long-name"}'
    assert platforms.wait_for(lambda: platforms.sent("telegram", "answerCallbackQuery"))


def test_forged_or_foreign_callback_data_never_reaches_rasa_as_an_intent(gateway, platforms, fake_rasa):
    fake_rasa.answer = lambda body: [{"text": "Pick", "buttons": [{"title": "A", "payload": "/talk_to_human"}]}]
    gateway.post("/telegram/webhook", json=telegram_text(700, 510, "menu"), headers=TG)
    assert platforms.wait_for(lambda: "Pick" in platforms.telegram_texts(510))
    own = [c for c in platforms.sent("telegram", "sendMessage") if c.body.get("text") == "Pick"][0]
    token = own.body["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    gateway.post("/telegram/webhook", json=telegram_callback(701, 511, token), headers=TG)  # another person
    gateway.post("/telegram/webhook", json=telegram_callback(702, 510, '/restart{"x":1}'), headers=TG)
    assert platforms.wait_for(lambda: len(rows(gateway.db, direction="in", state="done")) == 3)
    assert [r["message"] for r in fake_rasa.received] == ["menu"]


def test_long_answers_are_split_at_sentences_and_rtl_text_is_intact(gateway, platforms, fake_rasa):
    sentence = "هذه جملة عربية طويلة عن حقوقك وخياراتك. "
    long = (sentence * 200).strip()
    fake_rasa.answer = lambda body: [{"text": long}]
    gateway.post("/telegram/webhook", json=telegram_text(800, 512, "مرحبا", language="ar"), headers=TG)
    assert platforms.wait_for(lambda: len(platforms.telegram_texts(512)) >= 3)
    time.sleep(0.5)
    parts = [t for t in platforms.telegram_texts(512) if "جملة" in t]
    assert all(len(p) <= 4096 for p in parts) and len(parts) >= 2
    assert all(p.endswith(".") for p in parts)
    assert " ".join(parts) == long


def test_rate_limit_replies_politely_once(gateway, platforms, fake_rasa, content, channel_settings):
    limit = channel_settings.user_messages_per_minute
    for i in range(limit + 5):
        gateway.post("/telegram/webhook", json=telegram_text(900 + i, 513, f"flood {i}"), headers=TG)
    polite = content.render("utter_rate_limited", "en").text
    assert platforms.wait_for(lambda: len(fake_rasa.received) == limit, timeout=30)
    time.sleep(1.0)
    assert platforms.telegram_texts(513).count(polite) == 1
    assert len(fake_rasa.received) == limit


def test_commands_are_mapped_and_other_slashes_neutralised(gateway, platforms, fake_rasa):
    for i, text in enumerate(["/start", "/language", "/delete", "/restart", "/start deep-link-param"]):
        gateway.post("/telegram/webhook", json=telegram_text(1000 + i, 514, text), headers=TG)
    assert platforms.wait_for(lambda: len(fake_rasa.received) == 5)
    assert [r["message"] for r in fake_rasa.received] == ["/greet", "/change_language", "/delete_my_data",
                                                          "restart", "/greet"]


def test_the_channel_address_stays_in_the_gateway(gateway, platforms, fake_rasa, channel_settings):
    gateway.post("/telegram/webhook", json=telegram_text(1100, 987654321, "hi"), headers=TG)
    assert platforms.wait_for(lambda: platforms.telegram_texts(987654321))
    cid = pseudonym("telegram", "987654321", channel_settings.pseudonym_key)
    with gateway.db.session() as s:
        assert s.get(Conversation, cid).address == "987654321"
    assert "987654321" not in json.dumps(fake_rasa.received)


# -- WhatsApp ------------------------------------------------------------------------------------
def test_whatsapp_verification_challenge(gateway):
    ok = gateway.get("/whatsapp/webhook", params={"hub.mode": "subscribe", "hub.verify_token": VERIFY,
                                                  "hub.challenge": "1158201444"})
    assert ok.status_code == 200 and ok.text == "1158201444"
    bad = gateway.get("/whatsapp/webhook", params={"hub.mode": "subscribe", "hub.verify_token": "nope",
                                                   "hub.challenge": "1158201444"})
    assert bad.status_code == 403


@pytest.mark.parametrize("signature", [None, "sha256=" + "0" * 64, "md5=abc"])
def test_whatsapp_refuses_a_bad_signature_and_stores_nothing(gateway, fake_rasa, signature):
    raw, headers = signed(whatsapp_body([whatsapp_text("4915100000001", "wamid.A1", "hello")]))
    headers = {"content-type": "application/json"}
    if signature:
        headers["X-Hub-Signature-256"] = signature
    assert gateway.post("/whatsapp/webhook", content=raw, headers=headers).status_code == 403
    assert rows(gateway.db) == [] and fake_rasa.received == []


def test_whatsapp_text_answered_once_despite_duplicates(gateway, platforms, fake_rasa):
    raw, headers = signed(whatsapp_body([whatsapp_text("4915100000002", "wamid.B1", "hello")]))
    for _ in range(3):
        assert gateway.post("/whatsapp/webhook", content=raw, headers=headers).status_code == 200
    assert platforms.wait_for(lambda: platforms.whatsapp_to("4915100000002"))
    time.sleep(0.8)
    texts = [m["text"]["body"] for m in platforms.whatsapp_to("4915100000002") if m["type"] == "text"]
    assert texts.count("echo:hello") == 1
    assert [r["message"] for r in fake_rasa.received] == ["hello"]
    sent = platforms.sent("whatsapp")[0]
    assert sent.token == "Bearer whatsapp-access-token-0123456789"


def test_whatsapp_statuses_only_are_accepted_and_ignored(gateway, fake_rasa):
    raw, headers = signed(whatsapp_status("wamid.X", "4915100000003"))
    response = gateway.post("/whatsapp/webhook", content=raw, headers=headers)
    assert response.status_code == 200 and response.json()["messages"] == 0
    assert rows(gateway.db) == []


@pytest.mark.parametrize("body", [b"{bad", b'{"entry": 5}', b'{"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", "value": {"messages": [{"type": "text"}]}}]}]}'])
def test_whatsapp_malformed_bodies_are_refused(gateway, body):
    signature = "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    response = gateway.post("/whatsapp/webhook", content=body,
                            headers={"X-Hub-Signature-256": signature, "content-type": "application/json"})
    assert response.status_code == 400
    assert rows(gateway.db) == []


def test_whatsapp_buttons_lists_and_a_press(gateway, platforms, fake_rasa, content):
    three = [{"title": "Options", "payload": "/ask_options"}, {"title": "Person", "payload": "/talk_to_human"},
             {"title": "Stop", "payload": "/stop"}]
    fake_rasa.answer = lambda body: [{"text": "Three", "buttons": three},
                                     {"text": "Many", "buttons": content.language_buttons()[:6] * 2}]
    raw, headers = signed(whatsapp_body([whatsapp_text("4915100000004", "wamid.C1", "menu")]))
    gateway.post("/whatsapp/webhook", content=raw, headers=headers)
    assert platforms.wait_for(lambda: len(platforms.whatsapp_to("4915100000004")) >= 4)  # + the language menu
    sent = platforms.whatsapp_to("4915100000004")[:3]
    assert sent[0]["interactive"]["type"] == "button"
    assert [b["reply"]["title"] for b in sent[0]["interactive"]["action"]["buttons"]] == ["Options", "Person", "Stop"]
    many, rest = sent[1]["interactive"], sent[2]["interactive"]
    assert many["type"] == "list" and many["body"]["text"] == "Many"  # 12 options: a list holds 10
    rows = many["action"]["sections"][0]["rows"]
    assert len(rows) == 10 and all(len(r["title"]) <= 24 for r in rows)
    assert many["action"]["button"] == content.render("utter_choose", "en").text
    assert rest["type"] == "button" and len(rest["action"]["buttons"]) == 2  # the other 2, as reply buttons
    button_id = sent[0]["interactive"]["action"]["buttons"][1]["reply"]["id"]
    fake_rasa.answer = lambda body: [{"text": "ok"}]
    raw, headers = signed(whatsapp_body([whatsapp_reply("4915100000004", "wamid.C2", button_id, "Person")]))
    gateway.post("/whatsapp/webhook", content=raw, headers=headers)
    assert platforms.wait_for(lambda: len(fake_rasa.received) == 2)
    assert fake_rasa.received[1]["message"] == "/talk_to_human"


def test_whatsapp_429_and_5xx_are_retried_once_each(gateway, platforms, fake_rasa):
    platforms.fail_next("whatsapp", 429, retry_after=1)
    platforms.fail_next("whatsapp", 503)
    keep(gateway, "whatsapp", "4915100000005")
    raw, headers = signed(whatsapp_body([whatsapp_text("4915100000005", "wamid.D1", "retry me")]))
    gateway.post("/whatsapp/webhook", content=raw, headers=headers)
    assert platforms.wait_for(lambda: len(platforms.whatsapp_to("4915100000005")) >= 3, timeout=30)
    time.sleep(0.8)
    calls = [c for c in platforms.sent("whatsapp") if c.body.get("to") == "4915100000005"
             and c.body.get("text", {}).get("body") == "echo:retry me"]
    assert len(calls) == 3 and calls[1].at - calls[0].at >= 0.95
    assert [r.text for r in rows(gateway.db, direction="out", state="sent")].count("echo:retry me") == 1


def test_outside_the_24_hour_window_only_the_template_goes(gateway, platforms, fake_rasa):
    import datetime as dt

    raw, headers = signed(whatsapp_body([whatsapp_text("4915100000006", "wamid.E1", "hello")]))
    gateway.post("/whatsapp/webhook", content=raw, headers=headers)
    assert platforms.wait_for(lambda: platforms.whatsapp_to("4915100000006"))
    cid = pseudonym("whatsapp", "4915100000006", gateway.app.state.gateway.settings.pseudonym_key)
    with gateway.db.session() as s:  # a day and an hour later, a reply is waiting (e.g. a counsellor's)
        conv = s.get(Conversation, cid)
        conv.last_inbound_at = conv.last_inbound_at - dt.timedelta(hours=25)
        s.add(Message(conversation_id=cid, direction="out", sender="bot", text="late reply", state="pending"))
        s.add(Message(conversation_id=cid, direction="out", sender="bot", text="second late reply", state="pending"))
    gateway.app.state.gateway.worker.wake_sender()
    assert platforms.wait_for(lambda: any(m["type"] == "template" for m in platforms.whatsapp_to("4915100000006")))
    time.sleep(1.0)
    sent = platforms.whatsapp_to("4915100000006")
    assert [m["type"] for m in sent].count("template") == 1
    assert sent[-1]["template"]["name"] == "crossroads_reply_waiting"
    assert not any(m.get("text", {}).get("body", "").endswith("late reply") for m in sent)
    # The person answers the template: the window opens and the held replies go, in order.
    raw, headers = signed(whatsapp_body([whatsapp_text("4915100000006", "wamid.E2", "yes")]))
    gateway.post("/whatsapp/webhook", content=raw, headers=headers)
    assert platforms.wait_for(lambda: "echo:yes" in [m.get("text", {}).get("body") for m in platforms.whatsapp_to("4915100000006")])
    bodies = [m.get("text", {}).get("body") for m in platforms.whatsapp_to("4915100000006") if m["type"] == "text"]
    assert bodies[-3:] == ["late reply", "second late reply", "echo:yes"]


def test_whatsapp_voice_note_gets_the_media_reply(gateway, platforms, content, fake_rasa):
    voice = {"from": "4915100000007", "id": "wamid.F1", "timestamp": str(int(time.time())), "type": "audio",
             "audio": {"id": "media1", "mime_type": "audio/ogg; codecs=opus", "voice": True}}
    raw, headers = signed(whatsapp_body([voice]))
    gateway.post("/whatsapp/webhook", content=raw, headers=headers)
    expected = content.render("utter_unsupported_media", "en").text
    assert platforms.wait_for(lambda: any(m.get("interactive", {}).get("body", {}).get("text") == expected
                                          or m.get("text", {}).get("body") == expected
                                          for m in platforms.whatsapp_to("4915100000007")))
    assert fake_rasa.received == []


def test_polling_mode_without_a_public_url(tmp_path, platforms, rasa_client, fake_rasa, channel_settings):
    """A bot token and no webhook URL: the gateway long-polls getUpdates (a laptop without a public address)."""
    import dataclasses

    from bot.db import Database

    platforms.calls.clear()
    settings = dataclasses.replace(channel_settings, telegram_webhook_url=None,
                                   database_url=f"sqlite:///{tmp_path / 'polling.db'}")
    with platforms.lock:
        platforms.updates = [telegram_text(5000, 601, "first by polling"), telegram_text(5001, 601, "second")]
    database = Database(settings.database_url, keys=settings.data_keys)
    with TestClient(create_app(settings, rasa=rasa_client, db=database)):
        assert platforms.wait_for(lambda: "echo:second" in platforms.telegram_texts(601), timeout=20)
        assert platforms.sent("telegram", "deleteWebhook")
        with platforms.lock:  # confirmed updates are not handed out again
            platforms.updates.append(telegram_text(5001, 601, "second"))
        time.sleep(1.0)
    database.dispose()
    assert [r["message"] for r in fake_rasa.received] == ["first by polling", "second"]
    assert platforms.telegram_texts(601).count("echo:second") == 1


def test_erasure_on_telegram_confirms_and_leaves_nothing(gateway, platforms, fake_rasa):
    from bot.privacy import erase_conversation

    def erase(body):
        erase_conversation(gateway.db, body["sender"])
        return [{"text": "deleted", "buttons": [{"title": "Start again", "payload": "/greet"}]}]

    fake_rasa.answer = erase
    gateway.post("/telegram/webhook", json=telegram_text(1200, 515, "yes delete"), headers=TG)
    assert platforms.wait_for(lambda: "deleted" in platforms.telegram_texts(515))
    time.sleep(0.5)
    assert rows(gateway.db) == []
    with gateway.db.session() as s:
        assert s.scalars(select(Conversation)).all() == []


def test_a_web_chat_turn_takes_few_transactions_and_leaves_no_lease(gateway, fake_rasa):
    """Each transaction is a round trip to PostgreSQL and most of the gateway's CPU under `make bench`.
    A web chat turn: store the message, find and claim the conversation, read the message and the turn's
    context, record the answer, find nothing more and release the lease, hand the replies over: 7. It
    took 12 before the context read, the language read, the release and two wake-ups were folded in or
    dropped. The median of five turns, so that a background poll landing in one turn does not count."""
    from sqlalchemy import event

    commits = []
    event.listen(gateway.db.engine, "commit", lambda connection: commits.append(1))
    # As bot.rasa_nlg.ContentNLG answers: with the language each answer was rendered in.
    fake_rasa.answer = lambda body: [{"text": f"echo:{body['message']}", "language": body["metadata"]["language"]}]
    counts = []
    for turn in range(6):
        commits.clear()
        response = gateway.post("/webchat/api/message", json={"user_id": "txcount0001", "text": f"hello {turn}"})
        assert response.status_code == 200 and response.json()["replies"]
        counts.append(len(commits))
    # The first turn also creates the conversation and meets the worker's first upkeep; a turn's last
    # transaction (the release) may land in the next turn's count; the worker polls every 0.5 s.
    assert sorted(counts[1:])[2] <= 8, counts

    def leases():
        with gateway.db.session() as s:
            return [c.lease_owner for c in s.scalars(select(Conversation)).all()]

    # The worker releases the conversation right after the answer (the request may return first).
    deadline = time.monotonic() + 5
    while leases() != [None] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert leases() == [None]

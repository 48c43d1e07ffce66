"""The counsellors' console API: authentication, CSRF, roles, the queue, claiming, and a case from a
Telegram message to a counsellor's reply and back to the bot."""

from __future__ import annotations

import json
import threading
import time

import pytest
from sqlalchemy import select

from bot import handoff as cases
from bot.console.auth import COOKIE, MAX_FAILURES, AuthError, create_counsellor
from bot.db import Counsellor, Handoff, HandoffEvent, Message
from tests.conftest import TG
from tests.fakes.platforms import telegram_text

PASSWORD = "correct horse battery staple"
JSON = {"content-type": "application/json"}


@pytest.fixture
def accounts(gateway):
    db = gateway.db
    create_counsellor(db, "amina", PASSWORD, role="counsellor", languages="ar,fr")
    create_counsellor(db, "bruno", PASSWORD, role="counsellor", languages="es")
    create_counsellor(db, "sofia", PASSWORD, role="supervisor", languages="en")
    return db


def log_in(client, username="amina", password=PASSWORD):
    response = client.post("/console/api/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return response.json()["csrf"]


def post(client, path, csrf, body=None):
    return client.post(f"/console/api/{path}", json=body or {}, headers={"X-CSRF-Token": csrf})


def new_case(gateway, chat_id, text="hello", reason="talk_to_human", urgent=False, language="en"):
    gateway.post("/telegram/webhook", json=telegram_text(9000 + chat_id, chat_id, text, language=language), headers=TG)
    from bot.privacy import pseudonym

    cid = pseudonym("telegram", str(chat_id), gateway.app.state.gateway.settings.pseudonym_key)
    for _ in range(100):
        with gateway.db.session() as s:
            if s.scalars(select(Message).where(Message.conversation_id == cid, Message.state == "done")).first():
                break
        time.sleep(0.05)
    handoff = cases.request_handoff(gateway.db, cid, reason=reason, urgent=urgent,
                                    case_card={"language": language}, consent="urgent" if urgent else "given")
    return handoff.id, cid


# -- authentication ---------------------------------------------------------------------------------
def test_every_api_route_needs_a_session(gateway, accounts):
    for path in ("me", "queue", "updates", "cases/1", "canned", "counsellors", "stats"):
        assert gateway.get(f"/console/api/{path}").status_code == 401, path
    for path in ("cases/1/claim", "cases/1/reply", "cases/1/resolve", "messages/1/misunderstood", "logout"):
        assert gateway.post(f"/console/api/{path}", json={}).status_code == 401, path


def test_wrong_password_then_lock_out(gateway, accounts):
    for _ in range(MAX_FAILURES):
        r = gateway.post("/console/api/login", json={"username": "amina", "password": "wrong password!!"})
        assert r.status_code == 401
    # Locked: even the right password is refused, with the same answer as a wrong one.
    r = gateway.post("/console/api/login", json={"username": "amina", "password": PASSWORD})
    assert r.status_code == 401 and r.json()["message"] == "wrong username or password"
    unknown = gateway.post("/console/api/login", json={"username": "nobody", "password": PASSWORD})
    assert unknown.json() == r.json()
    with accounts.session() as s:
        assert s.scalars(select(Counsellor).where(Counsellor.username == "amina")).one().locked_until is not None


def test_login_sets_a_strict_cookie_and_never_reuses_a_planted_session(gateway, accounts):
    gateway.cookies.set(COOKIE, "attacker-chosen-session-id", path="/console")
    r = gateway.post("/console/api/login", json={"username": "amina", "password": PASSWORD})
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" in cookie and "Path=/console" in cookie
    token = cookie.split(";")[0].split("=", 1)[1]
    assert token != "attacker-chosen-session-id" and len(token) >= 40
    assert "password" not in r.text and PASSWORD not in r.text


def test_state_changes_need_the_csrf_token_and_json(gateway, accounts):
    case_id, _ = new_case(gateway, 701)
    csrf = log_in(gateway)
    assert gateway.post(f"/console/api/cases/{case_id}/claim", json={}).status_code == 403
    assert gateway.post(f"/console/api/cases/{case_id}/claim", json={},
                        headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert gateway.post(f"/console/api/cases/{case_id}/claim", content="{}",
                        headers={"X-CSRF-Token": csrf, "content-type": "text/plain"}).status_code == 415
    with accounts.session() as s:
        assert s.get(Handoff, case_id).status == "waiting"
    assert post(gateway, f"cases/{case_id}/claim", csrf).status_code == 200


def test_roles(gateway, accounts):
    case_id, _ = new_case(gateway, 702)
    csrf = log_in(gateway, "bruno")
    assert gateway.get("/console/api/stats").status_code == 403
    assert post(gateway, f"cases/{case_id}/priority", csrf, {"priority": "high"}).status_code == 403
    assert post(gateway, f"cases/{case_id}/resolve", csrf).status_code == 403  # not bruno's case
    assert post(gateway, f"cases/{case_id}/reply", csrf, {"text": "hi"}).status_code == 403
    csrf = log_in(gateway, "sofia")
    assert gateway.get("/console/api/stats").status_code == 200
    assert post(gateway, f"cases/{case_id}/priority", csrf, {"priority": "high"}).status_code == 200


# -- the queue ----------------------------------------------------------------------------------------
def test_urgent_first_then_longest_waiting_and_language_routing(gateway, accounts):
    normal_es, _ = new_case(gateway, 711, "hola", language="es")
    normal_ar, _ = new_case(gateway, 712, "مرحبا", language="ar")
    urgent_es, _ = new_case(gateway, 713, "me van a matar", reason="fear_of_harm", urgent=True, language="es")
    log_in(gateway, "sofia")
    order = [c["id"] for c in gateway.get("/console/api/queue").json()["cases"]]
    assert order[0] == urgent_es and order.index(normal_es) < order.index(normal_ar)
    log_in(gateway, "amina")  # speaks ar, fr: the Spanish normal case is not offered to her yet
    seen = [c["id"] for c in gateway.get("/console/api/queue").json()["cases"]]
    assert urgent_es in seen and normal_ar in seen and normal_es not in seen


def test_two_counsellors_claiming_at_once_exactly_one_wins(gateway, accounts):
    for round_ in range(5):
        case_id, _ = new_case(gateway, 720 + round_)
        with accounts.session() as s:
            people = s.scalars(select(Counsellor)).all()
        barrier = threading.Barrier(len(people) * 3)
        results = []

        def attempt(person):
            barrier.wait()
            try:
                cases.claim(accounts, case_id, person)
                results.append(person.username)
            except cases.HandoffError:
                results.append(None)

        threads = [threading.Thread(target=attempt, args=(p,)) for p in people for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [r for r in results if r]
        assert len(winners) == 1, results
        with accounts.session() as s:
            assert s.get(Handoff, case_id).assignee_id is not None
            claims = [e for e in s.scalars(select(HandoffEvent).where(HandoffEvent.handoff_id == case_id)) if e.kind == "claimed"]
            assert len(claims) == 1


# -- a case, end to end through Telegram -----------------------------------------------------------
def test_claim_reply_resolve_through_telegram(gateway, accounts, platforms, fake_rasa, content):
    case_id, cid = new_case(gateway, 730, "bonjour", language="fr")
    received_before = len(fake_rasa.received)
    csrf = log_in(gateway)
    assert post(gateway, f"cases/{case_id}/claim", csrf).status_code == 200
    joined = content.render("utter_counsellor_joined", "fr").text
    assert platforms.wait_for(lambda: joined in platforms.telegram_texts(730))
    # The person writes: it reaches the counsellor, not Rasa.
    gateway.post("/telegram/webhook", json=telegram_text(9900, 730, "j'ai peur <b>aidez-moi</b>", language="fr"),
                 headers=TG)
    assert platforms.wait_for(lambda: any(m["text"] == "j'ai peur <b>aidez-moi</b>" for m in
                                          gateway.get(f"/console/api/cases/{case_id}").json()["transcript"]))
    assert len(fake_rasa.received) == received_before
    assert post(gateway, f"cases/{case_id}/reply", csrf, {"text": "Je suis là. Que se passe-t-il ?"}).status_code == 200
    assert platforms.wait_for(lambda: "Je suis là. Que se passe-t-il ?" in platforms.telegram_texts(730))
    assert post(gateway, f"cases/{case_id}/notes", csrf, {"text": "private: call back"}).status_code == 200
    assert "private: call back" not in json.dumps(platforms.telegram_texts(730))
    assert post(gateway, f"cases/{case_id}/resolve", csrf).status_code == 200
    back = content.render("utter_handoff_resolved", "fr").text
    assert platforms.wait_for(lambda: back in platforms.telegram_texts(730))
    gateway.post("/telegram/webhook", json=telegram_text(9901, 730, "merci", language="fr"), headers=TG)
    assert platforms.wait_for(lambda: len(fake_rasa.received) == received_before + 1)  # the bot is back
    case = gateway.get(f"/console/api/cases/{case_id}").json()
    assert case["case"]["status"] == "resolved"
    kinds = [e["kind"] for e in case["events"]]
    assert kinds[:1] == ["created"] and {"claimed", "replied", "note", "resolved"} <= set(kinds)
    assert post(gateway, f"cases/{case_id}/reply", csrf, {"text": "late"}).status_code == 409


def test_misunderstood_marker_and_canned_replies(gateway, accounts):
    case_id, _ = new_case(gateway, 740, "blorp qwx zzz", language="ar")
    csrf = log_in(gateway)
    case = gateway.get(f"/console/api/cases/{case_id}").json()
    first_in = [m for m in case["transcript"] if m["direction"] == "in"][0]
    assert post(gateway, f"messages/{first_in['id']}/misunderstood", csrf, {"value": True}).status_code == 200
    case = gateway.get(f"/console/api/cases/{case_id}").json()
    assert [m for m in case["transcript"] if m["id"] == first_in["id"]][0]["misunderstood"] is True
    canned = gateway.get("/console/api/canned", params={"language": "ar"}).json()
    assert canned["language"] == "ar" and len(canned["replies"]) >= 4
    assert all(r["language"] == "ar" for r in canned["replies"])


def test_updates_answer_when_something_changes(gateway, accounts):
    log_in(gateway)
    cursor = gateway.get("/console/api/updates", params={"cursor": "x"}).json()["cursor"]
    start = time.monotonic()
    holder = {}

    def wait():
        holder["r"] = gateway.get("/console/api/updates", params={"cursor": cursor}).json()

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(0.5)
    new_case(gateway, 750)
    t.join(timeout=25)
    assert holder["r"]["changed"] is True and time.monotonic() - start < 5


def test_passwords_are_hashed_and_short_ones_refused(accounts):
    with accounts.session() as s:
        stored = s.scalars(select(Counsellor).where(Counsellor.username == "amina")).one().password_hash
    assert stored.startswith("$argon2") and PASSWORD not in stored
    with pytest.raises(AuthError):
        create_counsellor(accounts, "shorty", "short")


def test_hours_and_queue_position():
    import datetime as dt

    hours = cases.Hours.parse("mon-fri 09:00-17:00; sat 10:00-12:00", "Europe/Brussels")
    monday_noon_utc = dt.datetime(2026, 11, 23, 11, 0)
    sunday_utc = dt.datetime(2026, 11, 22, 12, 0)
    assert hours.open_at(monday_noon_utc) and not hours.open_at(sunday_utc)
    opening = hours.next_opening(sunday_utc)
    assert (opening.weekday(), opening.hour) == (0, 9)
    with pytest.raises(ValueError):
        cases.Hours.parse("weekdays 9-5", "UTC")


def test_web_chat_person_gets_the_counsellors_reply(gateway, accounts, fake_rasa):
    gateway.post("/webchat/api/message", json={"user_id": "webperson01", "text": "hello", "language": "en"})
    from bot.privacy import pseudonym

    cid = pseudonym("webchat", "webperson01", gateway.app.state.gateway.settings.pseudonym_key)
    case = cases.request_handoff(gateway.db, cid, reason="talk_to_human", urgent=False, consent="given")
    csrf = log_in(gateway, "sofia")
    assert post(gateway, f"cases/{case.id}/claim", csrf).status_code == 200
    assert post(gateway, f"cases/{case.id}/reply", csrf, {"text": "Hello, I'm Sofia."}).status_code == 200
    texts = [r["text"] for r in gateway.get("/webchat/api/messages", params={"user_id": "webperson01"}).json()["replies"]]
    assert texts[-1] == "Hello, I'm Sofia." and len(texts) == 2  # "a counsellor has joined", then the reply
    received = len(fake_rasa.received)
    gateway.post("/webchat/api/message", json={"user_id": "webperson01", "text": "thank you"})
    assert len(fake_rasa.received) == received  # held by the counsellor: not sent to Rasa


def test_transfer_and_snooze(gateway, accounts):
    case_id, _ = new_case(gateway, 760, language="ar")
    csrf = log_in(gateway, "amina")
    assert post(gateway, f"cases/{case_id}/claim", csrf).status_code == 200
    assert post(gateway, f"cases/{case_id}/transfer", csrf, {"to": "nobody"}).status_code == 400
    assert post(gateway, f"cases/{case_id}/transfer", csrf, {"to": "bruno"}).status_code == 200
    assert post(gateway, f"cases/{case_id}/reply", csrf, {"text": "x"}).status_code == 403  # no longer hers
    csrf = log_in(gateway, "bruno")
    assert post(gateway, f"cases/{case_id}/snooze", csrf, {"minutes": 0}).status_code == 400
    assert post(gateway, f"cases/{case_id}/snooze", csrf, {"minutes": 15}).status_code == 200
    with accounts.session() as s:
        h = s.get(Handoff, case_id)
        assert (h.status, h.assignee_id is not None) == ("snoozed", True)
    # The person writes: the case comes back to bruno at once.
    gateway.post("/telegram/webhook", json=telegram_text(9950, 760, "are you there?", language="ar"), headers=TG)
    for _ in range(100):
        with accounts.session() as s:
            if s.get(Handoff, case_id).status == "assigned":
                break
        time.sleep(0.05)
    with accounts.session() as s:
        assert s.get(Handoff, case_id).status == "assigned"

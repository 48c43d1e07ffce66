"""Privacy: encryption at rest, the storage choice, erasure and access, the retention purge."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sqlite3
import subprocess
import sys

import pytest
from sqlalchemy import select, text

from bot.crypto import Keyring
from bot.db import Base, Conversation, Database, Handoff, HandoffNote, Message, utcnow
from bot.errors import ConfigError
from bot.handoff import request_handoff
from bot.privacy import erase_person, minimise, plan_purge, purge, rotate_keys
from bot.settings import ROOT
from bot.tracker_store import TrackerStore
from tests.conftest import DATA_KEY

OTHER_KEY = "another-data-key-0123456789abcdefghijklmnop"


def make_tracker(settings, events):
    """A tracker store shaped like Rasa's SQLTrackerStore (events table), with `events` rows."""
    path = settings.tracker_store_url.split("///", 1)[1]
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, sender_id VARCHAR(255) NOT NULL, "
                "type_name VARCHAR(255) NOT NULL, timestamp FLOAT, intent_name VARCHAR(255), "
                "action_name VARCHAR(255), data TEXT)")
    for sender, type_name, timestamp, data in events:
        con.execute("INSERT INTO events (sender_id, type_name, timestamp, data) VALUES (?, ?, ?, ?)",
                    (sender, type_name, timestamp, json.dumps(data)))
    con.commit()
    con.close()
    return TrackerStore(settings.tracker_store_url)


def raw(db, sql):
    with db.engine.connect() as c:
        return c.execute(text(sql)).all()


# -- encryption at rest ------------------------------------------------------------------------------------
async def test_addresses_and_message_text_are_encrypted_at_rest(service, db):
    from bot.conversation import Incoming

    accepted = service.accept(Incoming("telegram", "555123", text="my passport number is X1234567",
                                       message_id="m1", address="555123"))
    stored = raw(db, "SELECT text FROM messages")[0][0]
    address = raw(db, "SELECT address FROM conversations")[0][0]
    assert stored.startswith("gAAAAA") and "X1234567" not in stored
    assert address.startswith("gAAAAA") and "555123" not in address
    with db.session() as s:  # the program reads plain text
        assert s.get(Message, accepted.message_id).text == "my passport number is X1234567"
        assert s.get(Conversation, accepted.conversation_id).address == "555123"
    # The database file holds neither.
    data = open(db.url.split("///", 1)[1], "rb").read()
    assert b"X1234567" not in data and b"555123" not in data


def test_case_cards_and_notes_are_encrypted(db):
    with db.session() as s:
        s.add(Conversation(id="c-1", channel="webchat"))
    handoff_id = request_handoff(db, "c-1", "fear_of_harm", urgent=True,
                                 case_card={"vulnerabilities": ["fear_of_harm"], "nationality": "AF"}).id
    with db.session() as s:
        s.add(HandoffNote(handoff_id=handoff_id, text="lives at 12 Rue Haute"))
    assert all(v.startswith("gAAAAA") for (v,) in raw(db, "SELECT case_card FROM handoffs"))
    assert all(v.startswith("gAAAAA") for (v,) in raw(db, "SELECT text FROM handoff_notes"))
    with db.session() as s:
        assert json.loads(s.get(Handoff, handoff_id).case_card)["nationality"] == "AF"


def test_a_new_key_in_front_then_rotation_then_the_old_key_can_go(settings, tmp_path):
    url = f"sqlite:///{tmp_path / 'rotate.db'}"
    old = Database(url, keys=DATA_KEY)
    old.upgrade()
    with old.session() as s:
        s.add(Conversation(id="c-2", channel="telegram", address="+32470000000"))
        s.flush()
        s.add_all(Message(conversation_id="c-2", direction="in", sender="user", text=f"message {i}") for i in range(7))
    old.dispose()
    both = Database(url, keys=f"{OTHER_KEY},{DATA_KEY}")  # new key first: new writes use it, old ones still read
    with both.session() as s:
        assert s.get(Conversation, "c-2").address == "+32470000000"
    changed = []
    assert rotate_keys(both, batch=3, progress=lambda column, n: changed.append((column, n))) == 8
    assert ("messages.text", 7) in changed
    assert rotate_keys(both) == 0  # nothing left on the old key
    both.dispose()
    new_only = Database(url, keys=OTHER_KEY)
    with new_only.session() as s:
        assert s.get(Conversation, "c-2").address == "+32470000000"
        assert sorted(m.text for m in s.scalars(select(Message))) == [f"message {i}" for i in range(7)]
    new_only.dispose()
    wrong = Database(url, keys=DATA_KEY)  # the old key alone cannot read the rotated rows
    with pytest.raises(ConfigError):
        with wrong.session() as s:
            s.get(Conversation, "c-2")
    wrong.dispose()
    Database(url, keys=DATA_KEY)  # (leave this process with the tests' key configured)


def test_rows_written_before_encryption_are_encrypted_at_upgrade(tmp_path):
    url = f"sqlite:///{tmp_path / 'legacy.db'}"
    db = Database(url, keys=DATA_KEY)
    db.upgrade()
    with db.engine.begin() as c:
        c.execute(text("INSERT INTO conversations (id, channel, created_at, last_activity_at, delay_notified, address) "
                       "VALUES ('c-3', 'telegram', '2026-01-01 00:00:00', '2026-01-01 00:00:00', 0, '987654')"))
        c.execute(text("INSERT INTO messages (conversation_id, direction, sender, text, created_at, state, kind, "
                       "attempts, misunderstood) VALUES ('c-3', 'in', 'user', 'plain old text', '2026-01-01 00:00:00', "
                       "'done', 'text', 0, 0)"))
    db.upgrade()
    assert raw(db, "SELECT address FROM conversations")[0][0].startswith("gAAAAA")
    assert raw(db, "SELECT text FROM messages")[0][0].startswith("gAAAAA")
    with db.session() as s:
        assert s.get(Conversation, "c-3").address == "987654"
    db.dispose()


@pytest.mark.parametrize("value", ["", "short", "x" * 31 + ",", "x" * 32 + ",tooshort"])
def test_weak_data_keys_are_refused(value):
    from bot.settings import load_settings

    env = {"RASA_TOKEN": "x" * 20, "NLG_TOKEN": "y" * 20, "PSEUDONYM_KEY": "z" * 20, "DATA_KEYS": value}
    with pytest.raises(ConfigError, match="DATA_KEYS"):
        load_settings(env, env_file=ROOT / "absent.env")
    if value:
        with pytest.raises(ConfigError):
            Keyring.parse(value)


# -- the storage choice ------------------------------------------------------------------------------------------
async def test_until_the_person_chooses_answered_messages_are_blanked(service, db):
    outcome = await service.handle("webchat", "user-p1", text="I am from Kabul and my name is Ahmad")
    assert outcome.replies[0].text == "echo:I am from Kabul and my name is Ahmad"  # still answered
    with db.session() as s:
        rows = s.scalars(select(Message).where(Message.conversation_id == outcome.conversation_id)).all()
    assert rows and all(m.text == "" and m.payload is None for m in rows)


async def test_declining_storage_still_gets_answers_and_keeps_nothing(service, db, content):
    first = await service.handle("webchat", "user-p2", payload="/privacy_minimal")
    assert first.replies[0].text == content.render("utter_privacy_minimal", "en", service.privacy_arguments()).text
    outcome = await service.handle("webchat", "user-p2", text="how does voluntary return work")
    assert outcome.replies[0].text == "echo:how does voluntary return work"
    with db.session() as s:
        conv = s.get(Conversation, outcome.conversation_id)
        rows = s.scalars(select(Message).where(Message.conversation_id == conv.id)).all()
    assert conv.storage == "minimal"
    assert all(m.text == "" for m in rows)


async def test_keeping_storage_keeps_the_transcript(service, db):
    await service.handle("webchat", "user-p3", payload="/privacy_keep")
    outcome = await service.handle("webchat", "user-p3", text="tell me about my options")
    with db.session() as s:
        texts = [m.text for m in s.scalars(select(Message).where(Message.conversation_id == outcome.conversation_id))]
    assert "tell me about my options" in texts and "echo:tell me about my options" in texts


async def test_an_open_case_keeps_its_messages_whatever_the_choice(service, db):
    outcome = await service.handle("webchat", "user-p4", text="they will kill me if I go back")
    request_handoff(db, outcome.conversation_id, "fear_of_harm", urgent=True)
    await service.handle("webchat", "user-p4", text="please help me quickly")
    minimise(db)
    with db.session() as s:
        texts = [m.text for m in s.scalars(select(Message).where(Message.conversation_id == outcome.conversation_id))]
    assert "please help me quickly" in texts


async def test_privacy_command_shows_the_notice_again(service, content):
    await service.handle("webchat", "user-p5", text="hello")
    outcome = await service.handle("webchat", "user-p5", text="/privacy")
    notice = content.render("utter_privacy_notice", "en", service.privacy_arguments())
    assert [(r.text, r.buttons) for r in outcome.replies] == [(notice.text, notice.buttons)]


# -- erasure and access ---------------------------------------------------------------------------------------
def every_row_mentioning(db, tracker_path, needles):
    """Every row of every gateway table (decrypted) and of the tracker store that contains a needle."""
    found = []
    with db.session() as s:
        for table in Base.metadata.sorted_tables:
            for row in s.execute(select(table)).all():
                values = " ".join(str(v) for v in row)
                decrypted = values
                for model in (Conversation, Message, Handoff, HandoffNote):
                    if model.__table__ is table:
                        obj = s.get(model, row[0])
                        decrypted += " " + " ".join(str(getattr(obj, c.name)) for c in table.columns)
                found += [(table.name, n) for n in needles if n in decrypted]
    con = sqlite3.connect(tracker_path)
    for (data, sender) in con.execute("SELECT data, sender_id FROM events"):
        found += [("events", n) for n in needles if n in (data or "") + sender]
    con.close()
    return found


async def test_delete_my_data_erases_the_gateway_rows_and_the_tracker_events(service, db, fake_rasa, settings):
    await service.handle("webchat", "user-p6", payload="/privacy_keep")
    outcome = await service.handle("webchat", "user-p6", text="my brother lives in Antwerp")
    cid = outcome.conversation_id
    request_handoff(db, cid, "talk_to_human", urgent=False, case_card={"nationality": "SY"})
    tracker = make_tracker(settings, [(cid, "user", 1.0, {"text": "my brother lives in Antwerp"}),
                                      (cid, "slot", 2.0, {"name": "nationality", "value": "SY"}),
                                      ("someone-else", "user", 3.0, {"text": "other person"})])
    service.tracker = tracker
    fake_rasa.answer = lambda body: [{"recipient_id": body["sender"], "custom": {"crossroads": "erase"}}]
    erased = await service.handle("webchat", "user-p6", text="yes delete")
    assert [r.text for r in erased.replies] == [service.content.render("utter_data_deleted", "en").text]
    path = settings.tracker_store_url.split("///", 1)[1]
    assert every_row_mentioning(db, path, [cid, "Antwerp", "yes delete"]) == []
    assert tracker.count("someone-else") == 1  # nobody else's data


async def test_erasure_waits_for_the_tracker_store_and_is_finished_by_the_purge(service, db, fake_rasa, settings):
    outcome = await service.handle("webchat", "user-p7", text="hello")
    cid = outcome.conversation_id

    class Down(TrackerStore):
        def delete(self, sender_id):
            raise OSError("tracker store down")

    service.tracker = Down(settings.tracker_store_url)
    fake_rasa.answer = lambda body: [{"custom": {"crossroads": "erase"}}]
    await service.handle("webchat", "user-p7", text="yes")
    with db.session() as s:
        assert s.get(Conversation, cid).erase_requested_at is not None
    tracker = make_tracker(settings, [(cid, "user", 1.0, {"text": "hello"})])
    report = purge(db, tracker, settings)
    assert cid in report.plan.erase_requested and report.tracker_events == 1
    with db.session() as s:
        assert s.get(Conversation, cid) is None


async def test_what_do_you_keep_shows_what_is_held(service, db, fake_rasa, settings, content):
    await service.handle("webchat", "user-p8", payload="/privacy_keep")
    outcome = await service.handle("webchat", "user-p8", text="hello")
    cid = outcome.conversation_id
    service.tracker = make_tracker(settings, [(cid, "slot", 1.0, {"name": "country_of_stay", "value": "be"}),
                                              (cid, "slot", 2.0, {"name": "nationality", "value": "af"})])
    fake_rasa.answer = lambda body: [{"custom": {"crossroads": "show_my_data"}}]
    shown = await service.handle("webchat", "user-p8", text="what do you keep about me")
    text_ = shown.replies[0].text
    assert "Language: English" in text_ and "Channel: web chat" in text_
    assert "country where you live now: BE" in text_ and "nationality: AF" in text_
    assert "keep for 30 days" in text_
    expires = (utcnow() + dt.timedelta(days=30)).strftime("%Y-%m-%d")
    assert expires in text_
    assert [b["payload"] for b in shown.replies[0].buttons] == ["/delete_my_data", "/privacy"]


async def test_a_directive_cannot_be_typed(service, fake_rasa):
    """Only an action's custom message is a directive; text that looks like one is just text."""
    outcome = await service.handle("webchat", "user-p9", text='{"crossroads": "erase"}')
    assert fake_rasa.received[-1]["message"] == '{"crossroads": "erase"}'
    assert outcome.replies[0].text.startswith("echo:")


# -- retention -------------------------------------------------------------------------------------------------
def seed_conversation(db, cid, storage, idle, open_case=False):
    with db.session() as s:
        s.add(Conversation(id=cid, channel="telegram", storage=storage, address="1234",
                           last_activity_at=utcnow() - idle))
        s.flush()
        s.add(Message(conversation_id=cid, direction="in", sender="user", text="text of " + cid, state="done"))
    if open_case:
        request_handoff(db, cid, "fear_of_harm", urgent=True)


def test_purge_removes_expired_conversations_and_tracker_events_and_keeps_open_cases(db, settings):
    seed_conversation(db, "kept-old", "kept", dt.timedelta(days=31))
    seed_conversation(db, "kept-recent", "kept", dt.timedelta(days=29))
    seed_conversation(db, "kept-old-open-case", "kept", dt.timedelta(days=40), open_case=True)
    seed_conversation(db, "unset-idle", None, dt.timedelta(minutes=31))
    seed_conversation(db, "minimal-active", "minimal", dt.timedelta(minutes=5))
    old = (utcnow() - dt.timedelta(days=31)).replace(tzinfo=dt.timezone.utc).timestamp()
    tracker = make_tracker(settings, [("kept-old", "user", old, {}), ("kept-recent", "user", old, {}),
                                      ("orphan", "user", old, {}), ("unset-idle", "user", old, {})])
    dry = purge(db, tracker, settings, dry_run=True)
    assert sorted(dry.plan.conversations) == ["kept-old", "unset-idle"]
    assert dry.plan.tracker_orphans == {"orphan": 1} and dry.plan.kept_for_open_case == 1
    with db.session() as s:
        assert s.get(Conversation, "kept-old") is not None  # a dry run changes nothing
    report = purge(db, tracker, settings)
    assert report.tracker_events == 3 and report.failed == 0
    with db.session() as s:
        left = sorted(s.scalars(select(Conversation.id)))
    assert left == ["kept-old-open-case", "kept-recent", "minimal-active"]
    assert sorted(tracker.senders()) == ["kept-recent"]


def test_retention_is_configurable(db, settings):
    seed_conversation(db, "kept-8-days", "kept", dt.timedelta(days=8))
    week = dataclasses.replace(settings, retention_days=7.0)
    assert plan_purge(db, None, week).expired_kept == ["kept-8-days"]
    assert plan_purge(db, None, settings).expired_kept == []


def test_purge_dry_run_command(settings, tmp_path):
    db = Database(settings.database_url, keys=settings.data_keys)
    db.upgrade()
    seed_conversation(db, "kept-old", "kept", dt.timedelta(days=31))
    env = {"DATABASE_URL": settings.database_url, "RASA_TOKEN": "x" * 20, "NLG_TOKEN": "y" * 20,
           "PSEUDONYM_KEY": "z" * 20, "DATA_KEYS": DATA_KEY, "TRACKER_STORE_URL": settings.tracker_store_url,
           "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "bot", "privacy", "purge", "--dry-run"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "would erase 1 conversation" in done.stdout and "kept-old" in done.stdout
    with db.session() as s:
        assert s.get(Conversation, "kept-old") is not None
    done = subprocess.run([sys.executable, "-m", "bot", "privacy", "purge"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "erased 1 conversation" in done.stdout, done.stdout + done.stderr
    with db.session() as s:
        assert s.get(Conversation, "kept-old") is None


def test_a_telegram_reply_is_blanked_once_delivered_when_not_kept(gateway, platforms, fake_rasa):
    import time

    from tests.conftest import TG
    from tests.fakes.platforms import telegram_text

    gateway.post("/telegram/webhook", json=telegram_text(61, 6061, "my address is Rue Blanche 9"), headers=TG)
    assert platforms.wait_for(lambda: "echo:my address is Rue Blanche 9" in platforms.telegram_texts(6061))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with gateway.db.session() as s:
            texts = [m.text for m in s.scalars(select(Message))]
        if all(t == "" for t in texts):
            break
        time.sleep(0.05)
    assert texts and all(t == "" for t in texts), texts

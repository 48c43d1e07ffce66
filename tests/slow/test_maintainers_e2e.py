"""The maintainers' loop end to end (issue 7), with the real gateway, Rasa and action server.

A person who chose "keep" writes something the assistant does not understand (with their name in
it), then asks for a person; a counsellor marks that message "misunderstood" in the console. It
reaches the review queue redacted; a maintainer exports the queue, labels it in YAML and imports
it (into a copy of the project's training data); the model is retrained and deployed into the
running Rasa while another person's messages keep arriving; the running assistant now understands
the message, none of the other person's messages was lost or answered twice; rollback restores
the previous model.
"""

from __future__ import annotations

import shutil
import threading
import time

import httpx
import pytest
import yaml
from sqlalchemy import select

from bot.console.auth import COOKIE, create_counsellor
from bot.content import ContentStore
from bot.db import Database, Handoff, Message, ReviewItem
from bot.deploy import deploy, previous_model
from bot.privacy import pseudonym
from bot.review import apply, collect, export, import_file
from bot.settings import ROOT, Secret
from bot.tracker_store import TrackerStore
from bot.training import train
from tests.fakes.platforms import telegram_text
from tests.slow.test_privacy_e2e import post_update as post
from tests.slow.test_privacy_e2e import press

pytestmark = pytest.mark.slow

CHAT = 8890002  # tests.slow.test_privacy_e2e.press presses buttons of this chat only through CHAT below
ODD = "my name is Zainab, blorptastic wuggle frobnication"
LABEL = "ask_travel_documents"
PASSWORD = "a long console password 44"


def parse(servers, text):
    r = httpx.post(f"http://127.0.0.1:{servers['rasa_port']}/model/parse", json={"text": text},
                   params={"token": servers["env"]["RASA_TOKEN"]}, timeout=30)
    return r.json()["intent"]


def project_copy(tmp_path):
    """What training reads, copied (data) or linked (code), so the test never edits the repository."""
    root = tmp_path / "project"
    root.mkdir()
    for name in ("config.yml", "domain.yml"):
        shutil.copy(ROOT / name, root / name)
    shutil.copytree(ROOT / "data", root / "data")
    (root / "bot").symlink_to(ROOT / "bot")
    (root / "actions").symlink_to(ROOT / "actions")
    return root


def test_flag_review_label_retrain_deploy_without_loss_and_rollback(servers, platforms, trained_model, tmp_path,
                                                                   monkeypatch):
    import tests.slow.test_privacy_e2e as privacy_e2e

    monkeypatch.setattr(privacy_e2e, "CHAT", CHAT)
    settings = servers["settings"]
    token = Secret(servers["env"]["RASA_TOKEN"])
    db = Database(settings.database_url, keys=settings.data_keys)
    tracker = TrackerStore(settings.tracker_store_url)
    cid = pseudonym("telegram", str(CHAT), Secret(servers["env"]["PSEUDONYM_KEY"]))
    before = parse(servers, ODD)
    assert before["name"] != LABEL  # the running model does not understand it yet

    # 1. A person who keeps their messages writes the odd message, then asks for a person.
    post(servers, telegram_text(991001, CHAT, "hello"))
    assert platforms.wait_for(lambda: len(platforms.telegram_texts(CHAT)) >= 3, timeout=30)
    press(servers, platforms, 991002, "/privacy_keep")
    post(servers, telegram_text(991003, CHAT, ODD))
    post(servers, telegram_text(991004, CHAT, "i want to talk to a real person"))
    consent = ContentStore().render("utter_handoff_consent", "en").text
    assert platforms.wait_for(lambda: consent in platforms.telegram_texts(CHAT), timeout=30)
    press(servers, platforms, 991005, "/affirm")  # yes, hand me to a person
    assert platforms.wait_for(lambda: _case(db, cid) is not None, timeout=30)

    # 2. A counsellor marks the odd message in the console.
    create_counsellor(db, "maya", PASSWORD, role="supervisor", languages="en")
    console = httpx.Client(base_url=servers["url"], timeout=30)
    login = console.post("/console/api/login", json={"username": "maya", "password": PASSWORD})
    headers = {"X-CSRF-Token": login.json()["csrf"],
               "Cookie": f"{COOKIE}={login.headers['set-cookie'].split(';')[0].split('=', 1)[1]}"}
    case = console.get(f"/console/api/cases/{_case(db, cid)}", headers=headers).json()
    odd_id = next(m["id"] for m in case["transcript"] if m["text"] == ODD)
    assert console.post(f"/console/api/messages/{odd_id}/misunderstood", json={"value": True},
                        headers=headers).status_code == 200

    # 3. Collected, redacted; exported, labelled in YAML, imported into a copy of the training data.
    collect(db, tracker, settings.review_confidence)
    with db.session() as s:
        items = s.scalars(select(ReviewItem).where(ReviewItem.source == "misunderstood",
                                                   ReviewItem.language == "en")).all()
    assert [i.text for i in items] == ["my name is <NAME>, blorptastic wuggle frobnication"]
    review = console.get("/console/api/review", headers=headers).json()
    assert any(i["text"].startswith("my name is <NAME>") for i in review["items"])
    exported = tmp_path / "review.yml"
    assert export(db, exported) >= 1
    data = yaml.safe_load(exported.read_text(encoding="utf-8"))
    for entry in data["items"]:
        entry["label"] = LABEL if entry["id"] == items[0].id else "discard"
    exported.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    result = import_file(db, exported, reviewer="test")
    assert result.labelled == 1 and result.errors == []
    root = project_copy(tmp_path)
    applied = apply(db, root / "data" / "nlu")
    assert applied.added.get("en") == 1  # (other tests' labelled items may land in their languages too)
    assert "    - my name is <NAME>, blorptastic wuggle frobnication" in (root / "data/nlu/en.yml").read_text()
    assert apply(db, root / "data" / "nlu").added == {}  # never twice

    # 4. Retrain; deploy into the running Rasa while another person's messages keep arriving.
    model = train(force=True, root=root, out=tmp_path / "models" / "crossroads-review.tar.gz")
    others = [CHAT + 1, CHAT + 2, CHAT + 3]  # 3 people x 10 messages (under the per-person rate limit)

    def traffic():
        for i in range(10):
            for n, chat in enumerate(others):
                post(servers, telegram_text(992000 + 100 * n + i, chat, f"what are my options {i}"))
            time.sleep(0.4)

    thread = threading.Thread(target=traffic)
    original = trained_model
    thread.start()
    time.sleep(1.0)
    done = deploy(model, [f"http://127.0.0.1:{servers['rasa_port']}"], token, record=tmp_path / "deployments.json")
    thread.join()
    assert parse(servers, ODD)["name"] == LABEL  # the running assistant understands it now
    other_cids = [pseudonym("telegram", str(chat), Secret(servers["env"]["PSEUDONYM_KEY"])) for chat in others]

    def settled():
        with db.session() as s:
            return s.scalars(select(Message).where(Message.conversation_id.in_(other_cids), Message.direction == "in",
                                                   Message.state == "pending")).first() is None
    assert platforms.wait_for(settled, timeout=120)
    with db.session() as s:
        incoming = s.scalars(select(Message).where(Message.conversation_id.in_(other_cids),
                                                   Message.direction == "in")).all()
        outgoing = s.scalars(select(Message).where(Message.conversation_id.in_(other_cids),
                                                   Message.direction == "out")).all()
    answered = {m.reply_to for m in outgoing}
    assert len(incoming) == 30 and all(m.state == "done" for m in incoming)  # none lost
    assert all(m.id in answered for m in incoming)  # each answered
    assert platforms.wait_for(lambda: sum(len(platforms.telegram_texts(c)) for c in others) ==
                              sum(1 for m in outgoing), timeout=30)
    time.sleep(1.0)
    assert sum(len(platforms.telegram_texts(c)) for c in others) == len(outgoing)  # nothing sent twice
    print(f"\ndeploy: {done.seconds:.1f}s while 30 messages arrived; all {len(incoming)} answered, "
          f"{len(outgoing)} replies each sent once")

    # 5. Rollback to the model that served before.
    deploy(original, [f"http://127.0.0.1:{servers['rasa_port']}"], token, action="rollback",
           record=tmp_path / "deployments.json")
    assert previous_model(tmp_path / "deployments.json").name == model.name
    assert parse(servers, ODD)["name"] == before["name"]
    db.dispose()


def _case(db, cid):
    with db.session() as s:
        return s.scalars(select(Handoff.id).where(Handoff.conversation_id == cid)).first()



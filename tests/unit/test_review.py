"""The maintainers' loop: redaction, the review queue, the YAML round trip, the regression gate,
deploy and rollback, adding a language."""

from __future__ import annotations

import json
import shutil

import httpx
import pytest
import yaml
from sqlalchemy import select

from bot.db import Conversation, Message, ReviewItem
from bot.deploy import DeployError, deploy, previous_model
from bot.evaluate import gate
from bot.redact import redact
from bot.review import ReviewError, apply, collect, decide, export, import_file, queue
from bot.settings import ROOT, Secret
from bot.scaffold import add, check
from tests.unit.test_privacy import make_tracker

# (message, what must not survive redaction)
PERSONAL = [
    ("my name is Ahmad Karimi and my phone is +32 470 12 34 56", ["Ahmad", "Karimi", "470", "+32"]),
    ("call me on 0471/23.45.67 or write to ahmad.k@example.org", ["0471", "23.45.67", "ahmad.k@example.org"]),
    ("je m'appelle Fatou, j'habite 12 rue de la Paix à Lyon", ["Fatou", "rue de la Paix", "Lyon"]),
    ("me llamo Juan Pérez, mi pasaporte es AB1234567", ["Juan", "Pérez", "AB1234567"]),
    ("اسمي محمد وانا ساكن في برلين ورقمي 00491761234567", ["محمد", "برلين", "00491761234567"]),
    ("esmam Reza hast, dar Hamburg zendegi mikonam", ["Reza", "Hamburg"]),
    ("ana ismi Khaled w sakin fi Marseille", ["Khaled", "Marseille"]),
    ("ስመይ ሰላም እዩ፡ ኣብ ሮማ እየ ዘለኹ", ["ሰላም", "ሮማ"]),
    ("my brother Karim is in detention in Calais, case number 2023-458812", ["Karim", "Calais", "458812"]),
    ("I live at 45 Avenue Louise in Brussels", ["45 Avenue Louise", "Brussels"]),
]
KEPT_AS_IS = ["I am from Afghanistan and I want to go back", "can I speak in English", "what are my options",
              "my brother works in a restaurant", "how much money for the flight?"]


@pytest.mark.parametrize("message, secrets", PERSONAL)
def test_personal_data_is_removed(message, secrets):
    redacted = redact(message)
    assert not [s for s in secrets if s in redacted], redacted
    assert "<" in redacted


@pytest.mark.parametrize("message", KEPT_AS_IS)
def test_ordinary_words_stay(message):
    assert redact(message) == message


def kept_conversation(db, cid="kept-1", storage="kept"):
    with db.session() as s:
        s.add(Conversation(id=cid, channel="telegram", language="en", storage=storage))


def user_event(text, intent, confidence, language="en", fallback=False):
    ranking = [{"name": intent, "confidence": confidence}]
    top = {"name": "nlu_fallback", "confidence": 0.4} if fallback else {"name": intent, "confidence": confidence}
    return {"event": "user", "text": text, "parse_data": {"intent": top, "intent_ranking":
                                                           ([top] if fallback else []) + ranking},
            "metadata": {"language": language}}


def test_low_confidence_turns_of_kept_conversations_are_collected_redacted_and_merged(db, settings):
    kept_conversation(db, "kept-1")
    kept_conversation(db, "not-kept", storage=None)
    tracker = make_tracker(settings, [
        ("kept-1", "user", 1.0, user_event("my name is Ahmad, papers for going home?", "ask_travel_documents", 0.35)),
        ("kept-1", "user", 2.0, user_event("my name is Yusuf, papers for going home?", "ask_travel_documents", 0.31)),
        ("kept-1", "user", 3.0, user_event("what are my options", "ask_options", 0.97)),
        ("kept-1", "user", 4.0, user_event("blorp", "greet", 0.5, fallback=True)),
        ("kept-1", "user", 5.0, user_event("/affirm", "affirm", 0.2)),
        ("not-kept", "user", 6.0, user_event("my name is Omar, papers?", "ask_travel_documents", 0.2)),
    ])
    report = collect(db, tracker, threshold=0.6)
    assert (report.added, report.merged) == (2, 1)
    items = queue(db)
    assert sorted((i.text, i.count, i.source, i.predicted_intent) for i in items) == [
        ("blorp", 1, "fallback", "greet"),
        ("my name is <NAME>, papers for going home?", 2, "low_confidence", "ask_travel_documents")]
    assert collect(db, tracker).added == 0  # the cursor remembers
    with db.session() as s:
        assert all(not hasattr(i, "conversation_id") for i in s.scalars(select(ReviewItem)))


def test_a_message_marked_in_the_console_is_collected_once(db, settings):
    kept_conversation(db, "kept-2")
    with db.session() as s:
        s.add(Message(conversation_id="kept-2", direction="in", sender="user", text="call me at +32 470 00 11 22",
                      misunderstood=True, language="en"))
    tracker = make_tracker(settings, [("kept-2", "user", 1.0, user_event("call me at +32 470 00 11 22",
                                                                        "talk_to_human", 0.8))])
    assert collect(db, tracker).from_console == 1
    assert [(i.text, i.source, i.predicted_intent, i.confidence) for i in queue(db)] == [
        ("call me at <PHONE>", "misunderstood", "talk_to_human", 80)]
    assert collect(db, tracker).from_console == 0


def test_export_import_round_trip_lands_in_the_right_file_once(db, settings, tmp_path):
    kept_conversation(db, "kept-3")
    tracker = make_tracker(settings, [
        ("kept-3", "user", 1.0, user_event("quiero saber qué pasa con mis papeles para volver", "ask_options", 0.3,
                                           language="es")),
        ("kept-3", "user", 2.0, user_event("zzz blorp", "greet", 0.2)),
        ("kept-3", "user", 3.0, user_event("what is the weather", "greet", 0.2))])
    collect(db, tracker)
    path = tmp_path / "review.yml"
    assert export(db, path) == 3
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    labels = {"quiero saber qué pasa con mis papeles para volver": "ask_travel_documents", "zzz blorp": "discard",
              "what is the weather": "out_of_scope"}
    for entry in data["items"]:
        entry["label"] = labels[entry["text"]]
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    result = import_file(db, path, reviewer="tester")
    assert (result.labelled, result.discarded, result.errors) == (2, 1, [])
    nlu = tmp_path / "nlu"
    shutil.copytree(ROOT / "data" / "nlu", nlu)
    before = {p.name: p.read_text(encoding="utf-8") for p in nlu.glob("*.yml")}
    applied = apply(db, nlu)
    assert applied.added == {"es": 1, "en": 1}
    es = yaml.safe_load((nlu / "es.yml").read_text(encoding="utf-8"))
    block = next(b for b in es["nlu"] if b.get("intent") == "ask_travel_documents")
    assert "quiero saber qué pasa con mis papeles para volver" in block["examples"]
    en = yaml.safe_load((nlu / "en.yml").read_text(encoding="utf-8"))
    assert "what is the weather" in next(b for b in en["nlu"] if b.get("intent") == "out_of_scope")["examples"]
    assert {p.name for p in nlu.glob("*.yml") if p.read_text(encoding="utf-8") != before[p.name]} == {"es.yml", "en.yml"}
    assert apply(db, nlu).added == {}  # applied items never go in twice


def test_an_example_already_under_another_intent_is_a_conflict_not_a_duplicate(db, settings, tmp_path):
    kept_conversation(db, "kept-4")
    collect(db, make_tracker(settings, [("kept-4", "user", 1.0, user_event("hello", "greet", 0.3))]))
    item = queue(db)[0]
    decide(db, item.id, "goodbye", "tester")
    nlu = tmp_path / "nlu"
    shutil.copytree(ROOT / "data" / "nlu", nlu)
    applied = apply(db, nlu)
    assert applied.added == {} and applied.conflicts and "greet" in applied.conflicts[0]


def test_unknown_labels_and_bad_files_are_refused(db, tmp_path):
    with pytest.raises(ReviewError):
        decide(db, 1, "not_an_intent", "tester")
    bad = tmp_path / "bad.yml"
    bad.write_text("items: [\n", encoding="utf-8")
    with pytest.raises(ReviewError):
        import_file(db, bad, "tester")
    bad.write_text("something: else\n", encoding="utf-8")
    with pytest.raises(ReviewError):
        import_file(db, bad, "tester")


# -- the regression gate ----------------------------------------------------------------------------------------
def summary(new, accepted=None, safety=1.0):
    out = {"target_macro_f1": 0.9, "languages": {l: {"macro_f1": v} for l, v in new.items()},
           "safety": {l: {"recall": safety} for l in new}}
    if accepted:
        out["comparison"] = {"languages": {l: {"accepted": accepted[l], "new": new[l], "delta": round(new[l] - accepted[l], 4)}
                                           for l in new}}
    return out


def test_the_gate_passes_a_model_as_good_as_the_last_one():
    assert gate(summary({"en": 0.93, "ar": 0.915}, {"en": 0.94, "ar": 0.92})) == []


def test_the_gate_fails_a_drop_of_more_than_two_points_in_any_language():
    problems = gate(summary({"en": 0.93, "ar": 0.905}, {"en": 0.93, "ar": 0.926}))
    assert problems == ["ar: macro-F1 fell 2.1 points (0.926 -> 0.905)"]


def test_the_gate_fails_below_target_and_below_full_safety_recall():
    problems = gate(summary({"en": 0.89}, safety=0.99))
    assert problems == ["en: macro-F1 0.890 below the target 0.9", "en: safety recall 0.990 below 1.0"]


def test_the_evaluation_report_has_the_comparison_and_charts():
    report = (ROOT / "reports" / "nlu" / "report.md").read_text(encoding="utf-8")
    assert "Compared with the last accepted model" in report
    assert (ROOT / "reports" / "nlu" / "macro_f1.png").exists() and (ROOT / "reports" / "nlu" / "confusions.png").exists()


# -- deploy and rollback ------------------------------------------------------------------------------------------
class FakeRasaServer:
    def __init__(self):
        self.model = "models/old.tar.gz"
        self.refuse = False

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.params.get("token") != "rasa-token-0123456789":
            return httpx.Response(401)
        if request.method == "PUT" and request.url.path == "/model":
            if self.refuse:
                return httpx.Response(400, json={"message": "bad model"})
            self.model = json.loads(request.content)["model_file"]
            return httpx.Response(204)
        return httpx.Response(200, json={"model_file": self.model})


@pytest.fixture
def fake_rasa_server(monkeypatch):
    server = FakeRasaServer()
    transport = httpx.MockTransport(server.handler)
    monkeypatch.setattr("bot.deploy.httpx.put", lambda url, **kw: httpx.Client(transport=transport).put(url, **kw))
    monkeypatch.setattr("bot.deploy.httpx.get", lambda url, **kw: httpx.Client(transport=transport).get(url, **kw))
    return server


def test_deploy_each_server_then_roll_back(fake_rasa_server, tmp_path):
    token = Secret("rasa-token-0123456789")
    first, second = tmp_path / "first.tar.gz", tmp_path / "second.tar.gz"
    first.write_bytes(b"1")
    second.write_bytes(b"2")
    record = tmp_path / "deployments.json"
    messages = []
    deploy(first, ["http://rasa-a", "http://rasa-b"], token, record=record, progress=messages.append)
    deploy(second, ["http://rasa-a"], token, record=record, progress=messages.append)
    assert fake_rasa_server.model == str(second)
    assert previous_model(record) == first
    assert json.loads(record.read_text())[0]["model"] == str(tmp_path / "old.tar.gz")  # what ran before
    assert any("rasa-b: serving first.tar.gz" in m for m in messages)
    fake_rasa_server.refuse = True
    with pytest.raises(DeployError, match="refused"):
        deploy(first, ["http://rasa-a"], token, record=record)
    with pytest.raises(DeployError, match="no model file"):
        deploy(tmp_path / "missing.tar.gz", ["http://rasa-a"], token, record=record)


# -- adding a language --------------------------------------------------------------------------------------------
def test_lang_add_scaffolds_and_check_lists_what_is_missing(tmp_path):
    root = tmp_path / "project"
    shutil.copytree(ROOT / "data" / "content", root / "data" / "content")
    for folder in ("data/nlu", "data/safety", "tests/safety"):
        (root / folder).mkdir(parents=True)
    shutil.copy(ROOT / "domain.yml", root / "domain.yml")
    created = add("sd", "سنڌي", root=root)
    assert [p.relative_to(root).as_posix() for p in created] == [
        "data/content/sd.yml", "data/nlu/sd.yml", "data/safety/sd.yml", "tests/safety/sd.yml"]
    assert "direction: rtl" in (root / "data/content/sd.yml").read_text(encoding="utf-8")
    missing = check("sd", root=root)
    assert not missing.complete
    assert "utter_greet" in missing.content and missing.nlu["greet"] == 0 and len(missing.lexicon) == 7
    assert "danger messages: 0/40" in missing.safety_set
    with pytest.raises(Exception, match="exists already"):
        add("sd", "سنڌي", root=root)
    with pytest.raises(Exception, match="language code"):
        add("Sindhi", "x", root=root)


# -- the review page's API ------------------------------------------------------------------------------------
def test_maintainers_review_in_the_console_and_read_no_cases(gateway):
    from bot.console.auth import create_counsellor

    db = gateway.db
    with db.session() as s:
        s.add(ReviewItem(language="fr", text="je veux rentrer <PLACE>", text_hash="h1", source="low_confidence",
                         predicted_intent="greet", confidence=30))
    create_counsellor(db, "rami", "a long enough password", role="maintainer", languages="fr")
    create_counsellor(db, "lea", "a long enough password", role="counsellor", languages="fr")
    csrf = gateway.post("/console/api/login", json={"username": "lea", "password": "a long enough password"}).json()["csrf"]
    assert gateway.get("/console/api/review").status_code == 403  # counsellors do not review
    gateway.post("/console/api/logout", json={}, headers={"X-CSRF-Token": csrf})
    csrf = gateway.post("/console/api/login", json={"username": "rami", "password": "a long enough password"}).json()["csrf"]
    assert gateway.get("/console/api/queue").status_code == 403  # maintainers read no cases
    listed = gateway.get("/console/api/review?language=fr").json()
    assert [i["text"] for i in listed["items"]] == ["je veux rentrer <PLACE>"] and "ask_avrr_process" in listed["intents"]
    item_id = listed["items"][0]["id"]
    bad = gateway.post(f"/console/api/review/{item_id}", json={"label": "nonsense"}, headers={"X-CSRF-Token": csrf})
    assert bad.status_code == 400
    ok = gateway.post(f"/console/api/review/{item_id}", json={"label": "ask_avrr_process"}, headers={"X-CSRF-Token": csrf})
    assert ok.json() == {"ok": True, "status": "labelled", "label": "ask_avrr_process"}
    assert gateway.get("/console/api/review").json()["items"] == []

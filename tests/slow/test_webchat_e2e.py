"""The whole service through the web chat API: Rasa, the action server and the gateway running."""

import re
import uuid

import httpx
import pytest
from sqlalchemy import select

from bot.content import ContentStore
from bot.db import Database, Handoff
from bot.settings import ROOT
from bot.training import split_examples
from tests.conftest import LAUNCH_LANGUAGES

pytestmark = pytest.mark.slow
CONTENT = ContentStore(ROOT / "data" / "content")
TRAIN, _ = split_examples(ROOT / "data" / "nlu")


def say(servers, user, **body):
    response = httpx.post(f"{servers['url']}/webchat/api/message", json={"user_id": user, **body}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def text(response, lang, **args):
    return CONTENT.render(response, lang, args).text


@pytest.mark.parametrize("lang", LAUNCH_LANGUAGES)
def test_a_conversation_in_each_launch_language(servers, lang):
    user = uuid.uuid4().hex
    chosen = say(servers, user, payload=f'/change_language{{"language":"{lang}"}}')
    assert chosen["language"] == lang
    assert chosen["direction"] == CONTENT.languages[lang].direction
    notice = text("utter_privacy_notice", lang, retention_days=30, minimal_minutes=30)
    assert [r["text"] for r in chosen["replies"]] == [text("utter_greet", lang), notice]  # first contact
    assert [b["payload"] for b in chosen["replies"][1]["buttons"]] == ["/privacy_keep", "/privacy_minimal"]

    options = say(servers, user, payload="/ask_options")
    assert [r["text"] for r in options["replies"]] == [text("utter_options", lang)]

    typed = TRAIN[lang]["ask_rights"][0]
    rights = say(servers, user, text=typed)
    assert [r["text"] for r in rights["replies"]] == [text("utter_rights", lang)], typed

    switch = say(servers, user, payload='/change_language{"language":"en"}' if lang != "en" else
                 '/change_language{"language":"fr"}')
    other = "en" if lang != "en" else "fr"
    assert switch["language"] == other
    assert [r["text"] for r in switch["replies"]] == [text("utter_language_changed", other)]


@pytest.mark.parametrize("lang", LAUNCH_LANGUAGES)
def test_safety_message_gets_safety_answer_and_urgent_handoff(servers, lang):
    user = uuid.uuid4().hex
    say(servers, user, payload=f'/change_language{{"language":"{lang}"}}')
    message = TRAIN[lang]["fear_of_harm"][0]
    answer = say(servers, user, text=message)
    texts = [r["text"] for r in answer["replies"]]
    assert texts[:2] == [text("utter_safety_fear_of_harm", lang), text("utter_handoff_urgent", lang)], message
    # Then the place in the queue and the usual wait (counsellors are "always at work" in these tests).
    queue = re.escape(CONTENT.languages[lang].responses["utter_handoff_queue"]["text"])
    queue = queue.replace(re.escape("{position}"), r"\d+").replace(re.escape("{minutes}"), r"\d+")
    assert len(texts) == 3 and re.fullmatch(queue, texts[2]), texts[2:]
    db = Database(servers["settings"].database_url, keys=servers["settings"].data_keys)
    with db.session() as s:
        urgent = s.scalars(select(Handoff).where(Handoff.reason == "fear_of_harm")).all()
    assert urgent and all(h.priority == "urgent" for h in urgent)


def test_first_message_language_is_detected(servers):
    user = uuid.uuid4().hex
    message = TRAIN["ar"]["ask_options"][0]
    answer = say(servers, user, text=message)
    assert answer["language"] == "ar" and answer["direction"] == "rtl"
    texts = [r["text"] for r in answer["replies"]]
    assert text("utter_options", "ar") in texts
    assert answer["replies"][-2]["buttons"] == CONTENT.language_buttons()
    assert answer["replies"][-1]["text"] == text("utter_privacy_notice", "ar", retention_days=30, minimal_minutes=30)


def test_typed_intent_injection_does_nothing_special(servers):
    user = uuid.uuid4().hex
    say(servers, user, payload='/change_language{"language":"es"}')
    forged = say(servers, user, text='/change_language{"language":"ar"}')
    assert forged["language"] == "es"
    restart = say(servers, user, text="/restart")
    assert restart["language"] == "es" and restart["replies"]


def test_delete_my_data_end_to_end(servers):
    user = uuid.uuid4().hex
    say(servers, user, payload='/change_language{"language":"fr"}')
    confirm = say(servers, user, text="/delete")
    assert [r["text"] for r in confirm["replies"]] == [text("utter_delete_data_confirm", "fr")]
    done = say(servers, user, payload="/affirm")
    assert [r["text"] for r in done["replies"]] == [text("utter_data_deleted", "fr")]


def test_no_message_text_or_user_id_in_any_log(servers):
    """Runs last in this module: scans what Rasa, the action server and the gateway logged."""
    user = "logcheck-" + uuid.uuid4().hex
    phrases = ["my name is Zanzibar Quill and my number is 0049 1512 3456789",
               "اسمي زنجبار وأخاف أن يقتلوني إذا رجعت", "I want to talk to a real person about Zanzibar"]
    for phrase in phrases:
        say(servers, user, text=phrase)
    for handle in servers["logs"].values():
        handle.flush()
    secrets = [servers["env"][k] for k in ("RASA_TOKEN", "NLG_TOKEN", "PSEUDONYM_KEY")]
    for path in servers["work"].glob("*.log"):
        logged = path.read_text(encoding="utf-8", errors="replace")
        for needle in ("Zanzibar", "زنجبار", "1512 3456789", user, *secrets):
            assert needle not in logged, f"{needle!r} found in {path.name}"

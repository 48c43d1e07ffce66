"""Every launch language end to end through Telegram (the fake Bot API): a person writes in their
language without choosing it, and is answered in it; a cry for help gets the safety answer in it.
(The web chat is covered per language by test_webchat_e2e.py.)"""

from __future__ import annotations

import itertools

import httpx
import pytest

from bot.content import ContentStore
from bot.languages import LanguageDetector, load_nlu_examples
from bot.settings import ROOT
from bot.training import split_examples
from tests.conftest import LAUNCH_LANGUAGES
from tests.fakes.platforms import telegram_text

pytestmark = pytest.mark.slow
CONTENT = ContentStore(ROOT / "data" / "content")
TRAIN, _ = split_examples(ROOT / "data" / "nlu")
_updates = itertools.count(71_000_000)


@pytest.fixture(scope="module")
def detector():
    return LanguageDetector(load_nlu_examples())


def post(servers, chat_id: int, text: str) -> None:
    response = httpx.post(f"{servers['url']}/telegram/webhook", json=telegram_text(next(_updates), chat_id, text),
                          headers={"X-Telegram-Bot-Api-Secret-Token":
                                   servers["settings"].telegram_webhook_secret.reveal()}, timeout=30)
    assert response.status_code == 200


def clear(detector, lang: str, intent: str) -> str:
    """A training sentence of the intent that the detector clearly places in `lang` (4+ words)."""
    for sentence in TRAIN[lang][intent]:
        if len(sentence.split()) >= 4 and detector.detect(sentence) == lang:
            return sentence
    raise AssertionError(f"no {intent} example in {lang} that detection recognises")


@pytest.mark.parametrize("lang", LAUNCH_LANGUAGES)
def test_telegram_in_each_language(servers, platforms, detector, lang):
    chat = 9_300_000 + LAUNCH_LANGUAGES.index(lang)
    question = clear(detector, lang, "ask_options")
    post(servers, chat, question)
    options = CONTENT.render("utter_options", lang).text
    assert platforms.wait_for(lambda: options in platforms.telegram_texts(chat), timeout=90), (
        question, platforms.telegram_texts(chat))
    rendered = CONTENT.render("utter_privacy_notice", lang, {"retention_days": 30, "minimal_minutes": 30})
    assert platforms.wait_for(lambda: rendered.text in platforms.telegram_texts(chat), timeout=30)

    danger = clear(detector, lang, "fear_of_harm")
    seen = len(platforms.telegram_texts(chat))
    post(servers, chat, danger)
    safety = CONTENT.render("utter_safety_fear_of_harm", lang).text
    assert platforms.wait_for(lambda: len(platforms.telegram_texts(chat)) > seen, timeout=90)
    assert platforms.telegram_texts(chat)[seen] == safety, danger
    # The privacy choice's buttons are in the language too.
    keyboards = [c.body.get("reply_markup") for c in platforms.sent("telegram", "sendMessage")
                 if str(c.body.get("chat_id")) == str(chat) and c.body.get("reply_markup")]
    titles = {b["text"] for k in keyboards for row in k["inline_keyboard"] for b in row}
    assert {b["title"] for b in rendered.buttons} <= titles

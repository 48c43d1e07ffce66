import pytest
from rasa.shared.nlu.training_data.message import Message

from bot.nlu.safety_priority import SafetyPriority
from bot.safety import CATEGORIES, SafetyLexicon, normalise
from tests.conftest import LAUNCH_LANGUAGES

SAFETY = list(CATEGORIES)


@pytest.fixture(scope="module")
def lex():
    return SafetyLexicon()


def test_every_launch_language_has_every_category(lex):
    counts = lex.counts()
    for lang in LAUNCH_LANGUAGES:
        assert lang in counts, lang
        assert all(counts[lang].get(c, 0) >= 20 for c in CATEGORIES), (lang, counts[lang])


def test_normalisation_removes_what_keyboards_add():
    assert normalise("  سـلام\u200b  WORLD ") == "سلام world"
    assert normalise("می\u200cخواهم") == "می\u200cخواهم"  # Persian keeps its zero-width non-joiner


def test_a_bad_pattern_is_reported_with_its_file(tmp_path):
    (tmp_path / "xx.yml").write_text("language: xx\n" + "".join(f"{c}: ['ok']\n" for c in CATEGORIES[:-1])
                                     + f"{CATEGORIES[-1]}: ['(unclosed']\n")
    from bot.errors import ContentError

    with pytest.raises(ContentError) as info:
        SafetyLexicon(tmp_path)
    assert "xx.yml" in str(info.value) and CATEGORIES[-1] in str(info.value)


def run(text, intent="ask_travel_documents", confidence=0.9):
    component = SafetyPriority({"intents": SAFETY, "threshold": 0.2})
    message = Message(data={"text": text, "intent": {"name": intent, "confidence": confidence},
                            "intent_ranking": [{"name": intent, "confidence": confidence}]})
    component.process([message])
    return message.get("intent")


def test_the_lexicon_overrides_the_classifier(lex):
    found = lex.match("my boss keeps my passport and says I must pay back the debt first")
    assert found is not None and found.category == "trafficking"
    intent = run("my boss keeps my passport and says I must pay back the debt first")
    assert intent["name"] == "trafficking" and intent["promoted_by"] == "safety_lexicon"


def test_ordinary_questions_and_payloads_are_left_alone():
    assert run("how much money do I get if I go back voluntarily?", "ask_money_support")["name"] == "ask_money_support"
    assert run('/inform{"in_detention":"yes"}', "inform")["name"] == "inform"

import pytest
from rasa.shared.nlu.training_data.message import Message

from bot.nlu.safety_priority import SafetyPriority

SAFETY = ["fear_of_harm", "self_harm", "violence"]


def message(top, ranking, text="x"):
    m = Message(data={"text": text})
    m.set("intent", {"name": top, "confidence": ranking[0][1]})
    m.set("intent_ranking", [{"name": n, "confidence": c} for n, c in ranking])
    return m


@pytest.mark.parametrize("top, ranking, expected", [
    ("ask_options", [("ask_options", 0.6), ("self_harm", 0.15), ("fear_of_harm", 0.1)], "self_harm"),  # 0.25 ≥ 0.2
    ("ask_options", [("ask_options", 0.85), ("self_harm", 0.1), ("stop", 0.05)], "ask_options"),  # 0.1 < 0.2
    ("nlu_fallback", [("nlu_fallback", 0.4), ("stop", 0.3), ("violence", 0.25)], "violence"),  # after the fallback
    ("fear_of_harm", [("fear_of_harm", 0.5), ("self_harm", 0.45)], "fear_of_harm"),  # already safety: unchanged
    ("greet", [("greet", 0.99)], "greet"),
])
def test_likely_safety_is_acted_on(top, ranking, expected):
    component = SafetyPriority({"intents": SAFETY, "threshold": 0.2})
    [result] = component.process([message(top, ranking)])
    assert result.get("intent")["name"] == expected


def test_promoted_confidence_is_the_safety_mass():
    component = SafetyPriority({"intents": SAFETY, "threshold": 0.2})
    [result] = component.process([message("stop", [("stop", 0.5), ("self_harm", 0.2), ("violence", 0.1)])])
    assert result.get("intent")["confidence"] == pytest.approx(0.3)


@pytest.mark.parametrize("text, expected", [("أفغانستان", "nlu_fallback"), ("in Germany", "nlu_fallback"),
                                            ("they will send me back to Afghanistan", "fear_of_harm")])
def test_a_bare_place_name_is_an_answer_not_a_cry_for_help(text, expected):
    component = SafetyPriority({"intents": SAFETY, "threshold": 0.2})
    [result] = component.process([message("nlu_fallback", [("nlu_fallback", 0.4), ("fear_of_harm", 0.3)], text)])
    assert result.get("intent")["name"] == expected

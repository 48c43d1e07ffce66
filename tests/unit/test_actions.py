import pytest
from rasa_sdk import Tracker
from rasa_sdk.events import ActionExecuted, SessionStarted, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import select

from actions.handoff import ActionRequestHandoff
from actions.language import ActionChangeLanguage
from actions.privacy import ActionDeleteMyData
from actions.session import ActionSessionStart
from bot.db import Conversation, Handoff, HandoffEvent, Message
from bot.handoff import SAFETY_INTENTS


def tracker(text="", intent="greet", entities=None, slots=None, events=None, sender="sender-1"):
    return Tracker(
        sender_id=sender,
        slots=slots or {},
        latest_message={"text": text, "intent": {"name": intent, "confidence": 0.9}, "entities": entities or []},
        events=events or [],
        paused=False,
        followup_action=None,
        active_loop={},
        latest_action_name="action_listen",
    )


async def run(action, t, domain):
    dispatcher = CollectingDispatcher()
    events = await action.run(dispatcher, t, domain)
    return dispatcher.messages, events


@pytest.fixture
def use_db(monkeypatch, db, settings):
    import dataclasses

    always = dataclasses.replace(settings, counsellor_hours="mon-sun 00:00-23:59", counsellor_timezone="UTC")
    monkeypatch.setattr("actions.handoff.settings", lambda: always)
    monkeypatch.setattr("actions.handoff.database", lambda: db)
    return db


async def test_menu_button_switches_language(domain):
    t = tracker('/change_language{"language":"ar"}', "change_language",
                entities=[{"entity": "language", "value": "ar"}], events=[{"event": "bot"}])
    messages, events = await run(ActionChangeLanguage(), t, domain)
    assert events == [SlotSet("language", "ar")]
    assert [(m["response"], m["language"]) for m in messages] == [("utter_language_changed", "ar")]


@pytest.mark.parametrize("text, expected", [
    ("can you speak French please", "fr"),
    ("بالعربي لو سمحت", "ar"),
    ("farsi lotfan", "fa"),
    ("en español por favor", "es"),
    ("ብትግርኛ ኣዘራርበኒ", "ti"),
    ("parle anglais stp", "en"),
])
async def test_named_language_switches(domain, text, expected):
    messages, events = await run(ActionChangeLanguage(), tracker(text, "change_language", events=[{"event": "bot"}]), domain)
    assert events == [SlotSet("language", expected)]


async def test_first_choice_greets_in_the_chosen_language(domain):
    t = tracker("x", "change_language", entities=[{"entity": "language", "value": "ti"}], events=[])
    messages, _ = await run(ActionChangeLanguage(), t, domain)
    assert [m["response"] for m in messages] == ["utter_greet"]


@pytest.mark.parametrize("text", ["another language please", "English or French?", "speak Klingon"])
async def test_typed_text_naming_no_single_language_says_so(domain, text):
    messages, events = await run(ActionChangeLanguage(), tracker(text, "change_language"), domain)
    assert events == [] and [m["response"] for m in messages] == ["utter_language_unknown"]


async def test_the_language_command_shows_the_menu(domain):
    messages, events = await run(ActionChangeLanguage(), tracker("/change_language", "change_language"), domain)
    assert events == [] and [m["response"] for m in messages] == ["utter_language_menu"]


async def test_unsupported_language_entity_is_ignored(domain):
    t = tracker('/change_language{"language":"klingon"}', "change_language",
                entities=[{"entity": "language", "value": "klingon"}])
    messages, events = await run(ActionChangeLanguage(), t, domain)
    assert events == [] and messages[0]["response"] == "utter_language_menu"


async def test_session_start_takes_the_language_from_metadata_and_keeps_slots(domain):
    t = tracker(slots={"session_started_metadata": {"language": "fa"}, "language": "en", "handoff_priority": "urgent"})
    _, events = await run(ActionSessionStart(), t, domain)
    assert events[0] == SessionStarted() and events[-1] == ActionExecuted("action_listen")
    assert SlotSet("language", "fa") in events and SlotSet("handoff_priority", "urgent") in events


async def test_session_start_ignores_an_unsupported_language(domain):
    _, events = await run(ActionSessionStart(), tracker(slots={"session_started_metadata": {"language": "zz"}}), domain)
    assert not any(isinstance(e, dict) and e.get("name") == "language" for e in events)


@pytest.mark.parametrize("intent", sorted(SAFETY_INTENTS))
async def test_safety_intents_open_an_urgent_handoff(domain, use_db, intent):
    messages, events = await run(ActionRequestHandoff(), tracker(intent=intent, sender=f"s-{intent}"), domain)
    assert [m["response"] for m in messages] == ["utter_handoff_urgent", "utter_handoff_queue"]
    assert messages[1]["position"] == 1 and messages[1]["minutes"] == 15
    assert events == [SlotSet("handoff_priority", "urgent")]
    with use_db.session() as s:
        handoff = s.scalars(select(Handoff).where(Handoff.conversation_id == f"s-{intent}")).one()
        assert (handoff.priority, handoff.status, handoff.reason) == ("urgent", "waiting", intent)


async def test_asking_for_a_person_is_normal_then_raised_to_urgent(domain, use_db):
    await run(ActionRequestHandoff(), tracker(intent="talk_to_human", sender="s-2"), domain)
    messages, _ = await run(ActionRequestHandoff(), tracker(intent="self_harm", sender="s-2"), domain)
    assert messages[0]["response"] == "utter_handoff_urgent"
    with use_db.session() as s:
        handoffs = s.scalars(select(Handoff).where(Handoff.conversation_id == "s-2")).all()
        assert len(handoffs) == 1 and handoffs[0].priority == "urgent"
        kinds = [e.kind for e in s.scalars(select(HandoffEvent).where(HandoffEvent.handoff_id == handoffs[0].id))]
        assert kinds == ["created", "consent", "priority"]


async def test_handoff_failure_never_claims_success(domain, monkeypatch):
    def broken():
        raise RuntimeError("db down")

    monkeypatch.setattr("actions.handoff.database", broken)
    messages, events = await run(ActionRequestHandoff(), tracker(intent="fear_of_harm"), domain)
    assert [m["response"] for m in messages] == ["utter_answer_delayed"] and events == []


async def test_delete_my_data_asks_the_gateway_and_touches_nothing_during_the_turn(domain, use_db):
    """Rasa writes the whole tracker back if its rows vanish mid-turn, so the action only sends the
    gateway a directive; the gateway erases after the turn (tests/unit/test_privacy.py)."""
    with use_db.session() as s:
        s.add(Conversation(id="s-3", channel="webchat", language="ar"))
        s.flush()
        s.add(Message(conversation_id="s-3", direction="in", sender="user", text="secret"))
    messages, events = await run(ActionDeleteMyData(), tracker(intent="affirm", sender="s-3"), domain)
    assert messages == [{"text": None, "buttons": [], "elements": [], "custom": {"crossroads": "erase"},
                         "template": None, "response": None, "image": None, "attachment": None}] \
        or [m.get("custom") for m in messages] == [{"crossroads": "erase"}]
    assert events == []
    with use_db.session() as s:
        assert s.get(Conversation, "s-3") is not None


async def test_outside_working_hours_the_person_is_told_when(domain, use_db, monkeypatch, settings):
    import dataclasses

    never_now = dataclasses.replace(settings, counsellor_hours="mon 00:00-00:01", counsellor_timezone="UTC")
    monkeypatch.setattr("actions.handoff.settings", lambda: never_now)
    messages, _ = await run(ActionRequestHandoff(), tracker(intent="fear_of_harm", sender="s-hours",
                                                            slots={"language": "fr"}), domain)
    assert [m["response"] for m in messages] == ["utter_handoff_urgent", "utter_handoff_outside_hours"]
    assert messages[1]["when"].startswith("lundi")


async def test_the_case_card_carries_what_the_counsellor_needs(domain, use_db):
    import json

    events = [{"event": "user", "text": "they will deport me on 12/12, tomorrow morning",
               "parse_data": {"intent": {"name": "imminent_removal"}}},
              {"event": "user", "text": "I also need my medicine", "parse_data": {"intent": {"name": "ask_medical"}}}]
    facts = {"country_of_stay": "DE", "nationality": "IQ", "situation": "asylum_refused",
             "eligibility": [{"programme": "REAG/GARP", "outcome": "likely_eligible"}]}
    await run(ActionRequestHandoff(), tracker(intent="imminent_removal", sender="s-card", events=events,
                                              slots={"case_facts": facts, "language": "en"}), domain)
    with use_db.session() as s:
        card = json.loads(s.scalars(select(Handoff).where(Handoff.conversation_id == "s-card")).one().case_card)
    assert card["country_of_stay"] == "DE" and card["country_of_origin"] == "IQ"
    assert card["vulnerabilities"] == ["imminent_removal", "medical"]
    assert card["deadlines"][:3] == ["removal date mentioned", "12/12", "tomorrow"]
    assert card["eligibility"][0]["outcome"] == "likely_eligible"

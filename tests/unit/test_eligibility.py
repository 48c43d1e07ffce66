import pytest
from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.eligibility import ActionCheckEligibility, ValidateEligibilityForm
from actions.services import ActionFindServices
from bot.eligibility import FORM_SLOTS, facts_from_slots, money, result_messages
from bot.programmes import assess_country, load_all
from bot.services import import_services
from bot.settings import ROOT

def _spaces(text):
    return text.replace("\u00a0", " ").replace("\u202f", " ")


GERMANY_REFUSED = {"country_of_stay": "de", "nationality": "af", "situation": "asylum_refused", "own_funds": "no",
                   "assisted_before": "no", "in_detention": "no", "prison_sentence": "none", "children": "unknown"}


def tracker(slots=None, text="", intent="ask_eligibility", sender="s-1", requested=None):
    slots = dict(slots or {})
    if requested:
        slots["requested_slot"] = requested
    return Tracker(sender_id=sender, slots=slots,
                   latest_message={"text": text, "intent": {"name": intent, "confidence": 0.9}, "entities": []},
                   events=[], paused=False, followup_action=None,
                   active_loop={"name": "eligibility_form"} if requested else {}, latest_action_name="action_listen")


def test_facts_from_answers():
    facts = facts_from_slots(GERMANY_REFUSED)
    assert facts == {"country_of_stay": "de", "nationality": "af", "situation": "asylum_refused", "own_funds": False,
                     "assisted_before": False, "in_detention": False, "prison_sentence": "none", "eu_national": False}
    assert facts_from_slots({"nationality": "pl"})["eu_national"] is True
    assert facts_from_slots({"situation": "unknown"}) == {}


@pytest.mark.parametrize("language, expected", [("en", "€1,000"), ("fr", "1 000 €"), ("es", "1.000 €")])
def test_amounts_are_written_as_in_the_language(language, expected):
    assert _spaces(money(1000, "EUR", language)) == expected


def test_germany_refused_without_money_in_french(content):
    facts = facts_from_slots(GERMANY_REFUSED)
    messages = result_messages(assess_country(facts, load_all()), "de", "fr", content)
    assert [m["response"] for m in messages] == ["utter_eligibility_result_header", "utter_programme_likely_eligible",
                                                 "utter_programme_likely_eligible", "utter_eligibility_alternatives"]
    assert messages[0]["country"] == "Allemagne"
    reag = messages[1]
    assert "1 000 €" in _spaces(reag["includes"]) and "200 €" in _spaces(reag["includes"])
    assert content.render("utter_per_adult", "fr").text in reag["includes"]
    starthilfe = messages[2]
    assert starthilfe["consequences"] != "—" and "returningfromgermany.de (2018)" in starthilfe["sources"]


def test_unknown_answers_are_named_in_the_persons_language(content):
    messages = result_messages(assess_country({"country_of_stay": "gb"}, load_all()), "gb", "es", content)
    vrs = next(m for m in messages if m.get("programme") == "Voluntary Returns Service")
    assert vrs["response"] == "utter_programme_cannot_tell"
    assert content.render("utter_fact_prison_sentence", "es").text in vrs["missing"]


def test_no_country_given_gets_the_general_answer(content):
    messages = result_messages([], "", "fa", content)
    assert [m["response"] for m in messages] == ["utter_eligibility_general", "utter_eligibility_alternatives"]


def test_a_country_without_programmes_says_so(content):
    messages = result_messages([], "it", "ar", content)
    assert messages[0]["response"] == "utter_eligibility_no_programmes"
    assert messages[-1]["response"] == "utter_eligibility_alternatives"


async def test_the_result_forgets_the_answers(domain):
    dispatcher = CollectingDispatcher()
    events = await ActionCheckEligibility().run(dispatcher, tracker({**GERMANY_REFUSED, "language": "ti"}), domain)
    assert events[:-1] == [SlotSet(slot, None) for slot in FORM_SLOTS]
    # Only what a counsellor's case card needs stays, for a handoff the person may ask for later.
    kept = events[-1]
    assert kept["name"] == "case_facts" and kept["value"]["country_of_stay"].upper() == "DE"
    assert set(kept["value"]) <= {"country_of_stay", "nationality", "situation", "in_detention", "children",
                                  "eligibility"}
    assert [m["response"] for m in dispatcher.messages][0] == "utter_eligibility_result_header"
    assert all(m["language"] == "ti" for m in dispatcher.messages)


@pytest.mark.parametrize("text, code", [("de", "de"), ("Allemagne", "de"), ("ألمانيا", "de"), ("I am in Belgium", "be"),
                                        ("افغانستان", "af"), ("Eritrea", "er")])
async def test_countries_in_any_language(domain, text, code):
    dispatcher = CollectingDispatcher()
    result = await ValidateEligibilityForm().validate_country_of_stay(text, dispatcher, tracker(), domain)
    assert result == {"country_of_stay": code} and dispatcher.messages == []


async def test_an_unrecognised_country_is_asked_again(domain):
    dispatcher = CollectingDispatcher()
    result = await ValidateEligibilityForm().validate_nationality("blablabla", dispatcher, tracker(), domain)
    assert result == {"nationality": None}
    assert [m["response"] for m in dispatcher.messages] == ["utter_country_not_understood"]


@pytest.mark.parametrize("slot, value, kept", [
    ("situation", "asylum_refused", "asylum_refused"), ("situation", "on_holiday", None),
    ("situation", "unknown", "unknown"), ("prison_sentence", "12_months_or_more", "12_months_or_more"),
    ("prison_sentence", "forever", None),
])
async def test_only_answers_the_rules_know_are_kept(domain, slot, value, kept):
    validate = getattr(ValidateEligibilityForm(), f"validate_{slot}")
    assert await validate(value, CollectingDispatcher(), tracker(), domain) == {slot: kept}


@pytest.fixture
def seeded(monkeypatch, db):
    import_services(db, ROOT / "tests" / "fixtures" / "services")
    monkeypatch.setattr("actions.services.database", lambda: db)
    return db


async def test_a_lawyer_in_brussels(domain, seeded):
    dispatcher = CollectingDispatcher()
    await ActionFindServices().run(dispatcher, tracker({"language": "fr"}, "avocat à Bruxelles", "ask_legal_aid"), domain)
    assert dispatcher.messages[0]["response"] == "utter_services_found"
    assert dispatcher.messages[0]["place"] == "Bruxelles"
    texts = [m["text"] for m in dispatcher.messages[1:]]
    assert texts[0].startswith("• Test Legal Desk Brussels") and "Test source (2026)" in texts[0]
    assert "⚠" in texts[1]  # the 2023 entry: please check


async def test_no_place_gives_the_general_answer(domain, seeded):
    dispatcher = CollectingDispatcher()
    await ActionFindServices().run(dispatcher, tracker({"language": "en"}, "I need a lawyer", "ask_legal_aid"), domain)
    assert [m["response"] for m in dispatcher.messages] == ["utter_legal_aid"]


async def test_nothing_in_the_city_falls_back(domain, seeded):
    dispatcher = CollectingDispatcher()
    await ActionFindServices().run(dispatcher, tracker({"language": "en"}, "lawyer in Berlin", "ask_legal_aid"), domain)
    assert dispatcher.messages[0]["response"] == "utter_services_fallback"
    assert dispatcher.messages[1]["text"].startswith("• Test Family Tracing")


@pytest.mark.parametrize("text, expected", [
    ("can I get help to go back? I am in Germany, my asylum was refused", {"country_of_stay": "de"}),
    ("هل يمكنني الحصول على مساعدة للعودة؟ أنا في ألمانيا", {"country_of_stay": "de"}),
    ("can I get help to go back?", {}),
])
async def test_the_country_in_the_first_message_is_used(domain, text, expected):
    result = await ValidateEligibilityForm().extract_country_of_stay(CollectingDispatcher(), tracker({}, text), domain)
    assert result == expected


async def test_the_country_is_not_taken_from_later_answers(domain):
    t = tracker({}, "I am in Germany", intent="affirm")
    assert await ValidateEligibilityForm().extract_country_of_stay(CollectingDispatcher(), t, domain) == {}

"""The tracker store gives Rasa a window of recent turns with the state before it, and saves only new events."""

from __future__ import annotations

import asyncio
from typing import List

import pytest
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import (ActionExecuted, ActiveLoop, BotUttered, Event, SessionStarted, SlotSet,
                                     UserUttered)
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.core.tracker_store import TrackerStore

from bot.rasa_tracker_store import SLACK_TURNS, STORED, WINDOW_TURNS, SQLTrackerStore, window_start
from bot.settings import ROOT

# Rasa takes a timestamp of 0 for "now"; the session query compares timestamps.
T0 = 1_700_000_000
INTENTS = ["greet", "ask_options", "ask_avrr_process", "thanks", "affirm", "deny"]


@pytest.fixture(scope="module")
def domain() -> Domain:
    return Domain.load(str(ROOT / "domain.yml"))


def turn(i: int, intent: str, action: str = "utter_ask_options") -> List[Event]:
    return [UserUttered(f"message {i}", intent={"name": intent, "confidence": 0.9}, timestamp=T0 + i),
            ActionExecuted(action, timestamp=T0 + i), BotUttered(f"answer {i}", timestamp=T0 + i),
            ActionExecuted("action_listen", timestamp=T0 + i)]


def conversation(turns: int, form_from: int = None) -> List[Event]:
    events: List[Event] = [ActionExecuted("action_session_start", timestamp=T0), SessionStarted(timestamp=T0),
                           SlotSet("language", "fr", timestamp=T0), ActionExecuted("action_listen", timestamp=T0)]
    for i in range(1, turns + 1):
        if i == 3:
            events += [UserUttered("je crains la police", intent={"name": "fear_of_harm", "confidence": 0.9},
                                   timestamp=T0 + i),
                       SlotSet("handoff_priority", "urgent", timestamp=T0 + i), ActionExecuted("action_listen", timestamp=T0 + i)]
        elif form_from is not None and i == form_from:
            events += [UserUttered("am I eligible", intent={"name": "check_eligibility", "confidence": 0.9},
                                   timestamp=T0 + i),
                       ActionExecuted("eligibility_form", timestamp=T0 + i), ActiveLoop("eligibility_form", timestamp=T0 + i),
                       SlotSet("country_of_stay", "DE", timestamp=T0 + i),
                       SlotSet("requested_slot", "nationality", timestamp=T0 + i),
                       ActionExecuted("action_listen", timestamp=T0 + i)]
        else:
            events += turn(i, INTENTS[i % len(INTENTS)])
    return events


def as_dicts(events: List[Event]):
    return [e.as_dict() for e in events]


def test_short_conversations_are_not_cut():
    assert window_start(as_dicts(conversation(WINDOW_TURNS + SLACK_TURNS))) == 0


def test_the_window_starts_at_the_listen_before_a_user_message():
    events = as_dicts(conversation(WINDOW_TURNS + SLACK_TURNS + 1))
    cut = window_start(events)
    assert cut > 0
    assert events[cut]["event"] == "action" and events[cut]["name"] == "action_listen"
    assert sum(1 for e in events[cut:] if e["event"] == "user") == WINDOW_TURNS


@pytest.mark.parametrize("form_from", [None, 5])
def test_windowed_tracker_has_the_full_trackers_state(domain, form_from, tmp_path):
    events = conversation(80, form_from=form_from)
    full = DialogueStateTracker.from_events("p1", events, domain.slots)
    store = SQLTrackerStore(domain, db=str(tmp_path / "t.db"), dialect="sqlite")
    asyncio.run(store.save(full))
    windowed = asyncio.run(store.retrieve("p1"))

    assert len(windowed.events) < len(full.events) / 2
    assert windowed.current_slot_values() == full.current_slot_values()
    assert windowed.current_slot_values()["handoff_priority"] == "urgent"  # set 77 turns before the window
    assert windowed.active_loop == full.active_loop
    if form_from:
        assert windowed.active_loop_name == "eligibility_form"
    assert windowed.latest_message.text == full.latest_message.text
    # What the policies see: the last turns' states are the same (memoization reads 4 back).
    assert domain.states_for_tracker_history(windowed)[-8:] == domain.states_for_tracker_history(full)[-8:]
    assert (domain.states_for_tracker_history(windowed, ignore_rule_only_turns=True)[-8:]
            == domain.states_for_tracker_history(full, ignore_rule_only_turns=True)[-8:])


def test_save_after_a_windowed_retrieve_stores_only_the_new_events(domain, tmp_path):
    store = SQLTrackerStore(domain, db=str(tmp_path / "t.db"), dialect="sqlite")
    events = conversation(60)
    asyncio.run(store.save(DialogueStateTracker.from_events("p2", events, domain.slots)))
    tracker = asyncio.run(store.retrieve("p2"))
    assert getattr(tracker, STORED) == len(tracker.events) < len(events)
    new = turn(61, "thanks")
    for event in new:
        tracker.update(event)
    asyncio.run(store.save(tracker))
    asyncio.run(store.save(tracker))  # saving the same tracker again adds nothing

    full = asyncio.run(store.retrieve_full_tracker("p2"))
    assert [e.as_dict() for e in full.events] == [e.as_dict() for e in events + new]
    again = asyncio.run(store.retrieve("p2"))
    assert again.latest_message.text == "message 61"
    assert again.current_slot_values() == DialogueStateTracker.from_events("p2", events + new,
                                                                           domain.slots).current_slot_values()


def test_a_new_conversation_is_saved_whole(domain, tmp_path):
    store = SQLTrackerStore(domain, db=str(tmp_path / "t.db"), dialect="sqlite")
    tracker = DialogueStateTracker.from_events("p3", conversation(2), domain.slots)
    asyncio.run(store.save(tracker))
    assert len(asyncio.run(store.retrieve_full_tracker("p3")).events) == len(tracker.events)
    assert isinstance(store, TrackerStore)

"""Rasa's own checks: the training data validates without warnings; test stories pass."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.settings import ROOT
from bot.training import TRAINING_DATA

pytestmark = pytest.mark.slow
RASA = str(Path(sys.executable).with_name("rasa"))


def test_data_validates_without_warnings():
    result = subprocess.run([RASA, "data", "validate", "--fail-on-warnings", "--data", *TRAINING_DATA], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_conversation_stories_pass(trained_model, tmp_path):
    env = {**os.environ, "RASA_TRACKER_DB": str(tmp_path / "tracker.db"), "ACTION_SERVER_URL": "http://127.0.0.1:9/webhook",
           "GATEWAY_URL": "http://127.0.0.1:9", "NLG_TOKEN": "unused-in-test-stories"}
    result = subprocess.run([RASA, "test", "core", "--stories", "tests/stories", "--model", str(trained_model),
                             "--fail-on-prediction-errors", "--out", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, env=env)
    assert not (ROOT / "${RASA_TRACKER_DB}").exists()
    failed = tmp_path / "failed_test_stories.yml"
    detail = failed.read_text() if failed.exists() else ""
    assert result.returncode == 0, detail[-4000:] + result.stdout[-2000:] + result.stderr[-2000:]


def _story_events(path: Path):
    """A conversation made of every test story's steps, one after the other."""
    import yaml
    from rasa.shared.core.events import ActionExecuted, ActiveLoop, SlotSet, UserUttered

    events = [ActionExecuted("action_listen", timestamp=1_700_000_000)]
    for story in yaml.safe_load(path.read_text(encoding="utf-8"))["stories"]:
        for step in story["steps"]:
            stamp = 1_700_000_000 + len(events)
            if "user" in step:
                if events[-1].type_name != "action" or events[-1].action_name != "action_listen":
                    events.append(ActionExecuted("action_listen", timestamp=stamp))
                events.append(UserUttered(step["user"].strip(), intent={"name": step["intent"], "confidence": 1.0},
                                          timestamp=stamp))
            elif "action" in step:
                events.append(ActionExecuted(step["action"], timestamp=stamp))
            elif "active_loop" in step:
                events.append(ActiveLoop(step["active_loop"], timestamp=stamp))
            elif "slot_was_set" in step:
                for slot in step["slot_was_set"]:
                    ((name, value),) = slot.items() if isinstance(slot, dict) else ((slot, True),)
                    events.append(SlotSet(name, value, timestamp=stamp))
    return events


def test_the_tracker_window_does_not_change_what_the_policies_predict(trained_model):
    """bot/rasa_tracker_store.py gives Rasa only recent turns of a long conversation: at every point
    of a long one, the policies predict the same next action, with the same confidence, from the
    window as from the whole conversation."""
    from rasa.core.agent import Agent
    from rasa.shared.core.trackers import DialogueStateTracker

    from bot.rasa_tracker_store import window_start, windowed_tracker

    agent = Agent.load(str(trained_model))
    domain = agent.domain
    story_events = [e for f in ("test_stories.yml", "test_eligibility.yml", "test_stories.yml",
                                "test_eligibility.yml") for e in _story_events(ROOT / "tests" / "stories" / f)]
    compared = 0
    for end in range(1, len(story_events) + 1):
        events = story_events[:end]
        cut = window_start([e.as_dict() for e in events])
        if cut == 0:
            continue
        full = DialogueStateTracker.from_events("long", events, domain.slots)
        window = windowed_tracker("long", events, cut, domain.slots)
        assert (window.current_slot_values(), window.active_loop) == (full.current_slot_values(), full.active_loop)
        expected = agent.processor._predict_next_with_tracker(full)
        got = agent.processor._predict_next_with_tracker(window)
        assert (got.max_confidence_index, round(got.max_confidence, 6), got.policy_name) == \
               (expected.max_confidence_index, round(expected.max_confidence, 6), expected.policy_name), end
        compared += 1
    assert compared > 40

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

"""Custom Rasa NLU components (referenced from config.yml by their module path)."""

from bot.nlu.linear_intent_classifier import LinearIntentClassifier
from bot.nlu.safety_priority import SafetyPriority

__all__ = ["LinearIntentClassifier", "SafetyPriority"]

"""Custom actions. Domain logic lives in `bot/` and is imported, so it is tested without Rasa."""

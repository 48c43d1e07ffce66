"""Crossroads gateway: channels, conversation service, content (NLG), storage and CLI."""

__version__ = "0.1.0"

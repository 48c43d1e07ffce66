"""What every action needs: settings, the database and the languages we serve (created lazily)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Dict, Optional

from bot.db import Database
from bot.settings import load_settings


@lru_cache(maxsize=1)
def settings():
    return load_settings()


@lru_cache(maxsize=1)
def database() -> Database:
    return Database(settings().database_url, keys=settings().data_keys)


@lru_cache(maxsize=1)
def served_languages() -> frozenset:
    from bot.languages import content_languages

    return frozenset(content_languages())


def supported(language: Optional[str]) -> Optional[str]:
    return language if language in served_languages() else None


def language_of(tracker: Any) -> Optional[str]:
    return supported(tracker.get_slot("language"))


def metadata_language(metadata: Optional[Dict[str, Any]]) -> Optional[str]:
    if not isinstance(metadata, dict):
        return None
    value = metadata.get("language")
    return supported(value) if isinstance(value, str) else None

"""The safety lexicon: curated patterns per language (data/safety/<lang>.yml) that catch a cry for help
even when the intent classifier does not.

`bot.nlu.SafetyPriority` consults it for every message, before anything else: a match sets the
matching safety intent, so the person gets the safety answer and an urgent counsellor. The files are
read when Rasa starts (a change needs a restart, not a retraining). Patterns are Python regular
expressions matched with `re.search`, case-insensitively, against the message after NFKC, lower-casing
and collapsing white space. They were written per language by native-level writers from their own
knowledge, independently of the training data and of the safety test set (tests/safety/).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import yaml

from bot.errors import ContentError
from bot.settings import ROOT

CATEGORIES = ("fear_of_harm", "self_harm", "violence", "trafficking", "unaccompanied_minor", "detention",
              "imminent_removal")
LEXICON_DIR = ROOT / "data" / "safety"
# Zero-width characters people's keyboards insert (ZWNJ is kept: Persian spelling uses it).
_INVISIBLE = re.compile(r"[\u200b\u200d\u2060\ufeff\u0640\u064b-\u0652\u0670]")  # also Arabic tatweel and vowel marks


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text or "")
    text = _INVISIBLE.sub("", text).lower()
    return re.sub(r"\s+", " ", text).strip()


@dataclass(frozen=True)
class Match:
    category: str
    language: str
    pattern: str


class SafetyLexicon:
    def __init__(self, directory: Path = LEXICON_DIR) -> None:
        self.patterns: List[Tuple[str, str, re.Pattern]] = []  # (language, category, compiled)
        self.languages: List[str] = []
        for path in sorted(Path(directory).glob("*.yml")):
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            if data.get("language") != path.stem:
                raise ContentError(f"{path}: 'language' must be {path.stem!r}")
            self.languages.append(path.stem)
            for category in CATEGORIES:
                entries = data.get(category) or []
                if not isinstance(entries, list) or not entries:
                    raise ContentError(f"{path}: {category} needs a list of patterns")
                for pattern in entries:
                    try:
                        self.patterns.append((path.stem, category, re.compile(str(pattern), re.IGNORECASE)))
                    except re.error as exc:
                        raise ContentError(f"{path}: {category}: bad pattern {pattern!r}: {exc}") from exc

    def match(self, text: str, language: Optional[str] = None) -> Optional[Match]:
        """The first matching pattern, trying the message's language first, then every other one."""
        normal = normalise(text)
        if not normal:
            return None
        ordered = sorted(self.patterns, key=lambda p: p[0] != language) if language else self.patterns
        for lang, category, compiled in ordered:
            if compiled.search(normal):
                return Match(category, lang, compiled.pattern)
        return None

    def counts(self) -> Dict[str, Dict[str, int]]:
        result: Dict[str, Dict[str, int]] = {}
        for lang, category, _ in self.patterns:
            result.setdefault(lang, {}).setdefault(category, 0)
            result[lang][category] += 1
        return result


@lru_cache(maxsize=1)
def lexicon() -> SafetyLexicon:
    return SafetyLexicon()

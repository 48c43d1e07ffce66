"""Languages: which ones we serve, guessing the language of a message, finding a named language.

Detection is a small character n-gram classifier trained on our own NLU examples
(`data/nlu/<lang>.yml`), so a language added through the maintainers' workflow is detected
without code changes. It is only a suggestion: on short or mixed text it says "don't know".
Language names ("speak French", "بالعربي", "farsi") come from CLDR (via Babel) in every served
language plus the informal names listed in each content file (`language_names:`).
"""

from __future__ import annotations

import re
import threading
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import yaml

from bot.settings import ROOT

NLU_DIR = ROOT / "data" / "nlu"
CONTENT_DIR = ROOT / "data" / "content"

# CLDR has separate codes for some of the languages we group under one content file.
CLDR_ALIASES = {"fa": ["fa", "prs"]}

_ARABIC_DIACRITICS = re.compile("[\u064b-\u065f\u0670\u06d6-\u06ed\u0640]")
_ZW = re.compile("[\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def normalise(text: str) -> str:
    """Case-fold and strip what varies between typists: diacritics, tatweel, letter variants."""
    text = _ZW.sub("", unicodedata.normalize("NFKC", text)).casefold()
    text = _ARABIC_DIACRITICS.sub("", text)
    text = text.translate(str.maketrans({"أ": "ا", "إ": "ا", "آ": "ا", "ي": "ی", "ى": "ی", "ك": "ک", "ة": "ه"}))
    # Latin accents: "français" == "francais"
    decomposed = unicodedata.normalize("NFD", text)
    return "".join(c for c in decomposed if not (unicodedata.category(c) == "Mn" and ord(c) < 0x0370))


def content_languages(content_dir: Path = CONTENT_DIR) -> List[str]:
    return sorted(p.stem for p in content_dir.glob("*.yml"))


@lru_cache(maxsize=8)
def _language_name_index(content_dir: Path = CONTENT_DIR) -> Tuple[Tuple[str, str], ...]:
    """(normalised name, language code) pairs, longest names first."""
    from babel import Locale, UnknownLocaleError

    codes = content_languages(content_dir)
    pairs = set()
    for writer in codes:
        try:
            locale = Locale.parse(writer)
        except (UnknownLocaleError, ValueError):
            locale = None
        for target in codes:
            if locale is not None:
                for cldr in CLDR_ALIASES.get(target, [target]):
                    name = locale.languages.get(cldr)
                    if name:
                        pairs.add((normalise(name), target))
        data = yaml.safe_load((content_dir / f"{writer}.yml").read_text(encoding="utf-8")) or {}
        for target, names in (data.get("language_names") or {}).items():
            if target in codes:
                for name in names or []:
                    pairs.add((normalise(str(name)), target))
        if data.get("name"):
            for part in re.split(r"\s*/\s*", str(data["name"])):
                pairs.add((normalise(part), writer))
    usable = [(n, c) for n, c in pairs if len(n) >= 3]
    return tuple(sorted(usable, key=lambda p: (-len(p[0]), p[0])))


def find_named_language(text: str, content_dir: Path = CONTENT_DIR) -> Optional[str]:
    """The one language named in `text`, or None when none or several different ones are named."""
    norm = normalise(text)
    found = set()
    for name, code in _language_name_index(content_dir):
        if _is_latin(name):
            if contains_latin_word(norm, name):
                found.add(code)
        elif name in norm:
            found.add(code)
    return found.pop() if len(found) == 1 else None


@lru_cache(maxsize=None)
def _latin_word(name: str) -> "re.Pattern[str]":
    return re.compile(r"(?<![a-z])" + re.escape(name) + r"(?![a-z])")


def contains_latin_word(text: str, name: str) -> bool:
    """`name` occurs in `text` (both normalised) and is not part of a longer Latin word. The substring test
    first: thousands of place and language names are tried per message, and compiling a pattern each
    time (Python keeps only 512) cost the action server 200 ms a message (py-spy, `make bench`)."""
    return name in text and _latin_word(name).search(text) is not None


def _is_latin(s: str) -> bool:
    return all(ord(c) < 0x0250 for c in s)


def _detection_form(text: str) -> str:
    """Lighter than `normalise`: keeps the letters that tell Arabic from Persian (ي ی ك ک ة)."""
    return _ARABIC_DIACRITICS.sub("", _ZW.sub("", unicodedata.normalize("NFKC", text)).casefold())


class LanguageDetector:
    """A linear model (logistic loss, trained by SGD) over character 1–4-grams of the NLU examples.

    Naive Bayes was measured too: it is overconfident on Arabic vs Persian (10–20% wrong guesses
    on held-out text); this model, answering only above 0.8, was wrong on at most 2% and right on
    81–93% per language (tests/unit/test_languages.py). It trains in about 4 s.
    """

    def __init__(self, examples: Dict[str, Iterable[str]]) -> None:
        from sklearn.feature_extraction.text import CountVectorizer
        from sklearn.linear_model import SGDClassifier

        texts, labels = [], []
        for lang, items in examples.items():
            for item in items:
                texts.append(_detection_form(item))
                labels.append(lang)
        if len(set(labels)) < 2:
            raise ValueError("language detection needs examples of at least two languages")
        self._vectoriser = CountVectorizer(analyzer="char_wb", ngram_range=(1, 4))
        self._model = SGDClassifier(loss="log_loss", alpha=1e-4, max_iter=200, tol=1e-4, random_state=0)
        self._model.fit(self._vectoriser.fit_transform(texts), labels)

    def detect(self, text: str, min_probability: float = 0.8, min_letters: int = 4) -> Optional[str]:
        """The most likely language, or None when the text is too short or the guess is weak."""
        norm = _detection_form(text)
        if sum(c.isalpha() for c in norm) < min_letters:
            return None
        probabilities = self._model.predict_proba(self._vectoriser.transform([norm]))[0]
        best = probabilities.argmax()
        if probabilities[best] < min_probability:
            return None
        return str(self._model.classes_[best])


def load_nlu_examples(nlu_dir: Path = NLU_DIR) -> Dict[str, List[str]]:
    """Every example text per language file (`data/nlu/<lang>.yml`)."""
    result: Dict[str, List[str]] = {}
    for path in sorted(nlu_dir.glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        items = result.setdefault(path.stem, [])
        for block in data.get("nlu", []):
            for line in str(block.get("examples", "")).splitlines():
                line = line.strip()
                if line.startswith("- "):
                    items.append(line[2:].strip())
    return result


_detector: Optional[LanguageDetector] = None
_detector_lock = threading.Lock()


def detector() -> LanguageDetector:
    """The shared detector, built on first use from the NLU data (about 4 s)."""
    global _detector
    with _detector_lock:
        if _detector is None:
            _detector = LanguageDetector(load_nlu_examples())
        return _detector


def warm_up_in_background() -> threading.Thread:
    """Build the shared detector in a thread so no request waits for it."""
    thread = threading.Thread(target=detector, name="language-detector", daemon=True)
    thread.start()
    return thread


def detector_ready() -> bool:
    return _detector is not None


def detect_if_ready(text: str) -> Optional[str]:
    """Detect with the shared detector, or say "don't know" while it is still being built."""
    if _detector is None:
        return None
    return _detector.detect(text)

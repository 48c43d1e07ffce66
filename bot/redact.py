"""Remove personal data from a message before anyone reviews it (issue 7, docs/maintainers.md).

Replaced, in every language:
- e-mail addresses -> <EMAIL>; phone numbers (7+ digits, with spaces, dots, dashes, brackets or a
  leading +) -> <PHONE>; document and case numbers (letters and 5+ digits, or 6+ digits) -> <NUMBER>;
- street addresses (a street word next to a house number, in the launch languages) -> <ADDRESS>;
- names introduced by a cue ("my name is", "je m'appelle", "me llamo", "اسمي", "اسمم", "ismi",
  "ስመይ"...) -> <NAME>; capitalised words after a cue word like "Mr", "Mrs", "Dr" -> <NAME>;
- cities and towns known to CLDR in our languages (the names `bot.services` resolves) -> <PLACE>.
  Country names stay: they carry no identity on their own and the eligibility intents need them.

spaCy's rule-based Matcher (a blank multilingual pipeline: no model weights) finds the name cues;
regular expressions do the rest. Redaction is best effort: reviewers see a notice to discard anything
that still identifies a person.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import List, Tuple

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
PHONE = re.compile(r"(?<![\w+])(?:\+|00)?\d(?:[\s()./-]{0,2}\d){6,}(?!\w)")
DOCUMENT = re.compile(r"(?<!\w)(?:[A-Za-z]{1,3}[-\s]?\d{5,}[A-Za-z]?|\d{6,})(?!\w)")
STREET_WORDS = (r"street|st\.|road|rd\.|avenue|ave\.|lane|rue|avenue|boulevard|bd|chemin|place|impasse|calle|"
                r"avenida|plaza|paseo|carrer|strasse|straße|str\.|weg|laan|straat|via|viale|"
                r"شارع|خیابان|کوچه|جادة|ጎደና")
ADDRESS = re.compile(rf"(?:\b\d{{1,4}}[a-z]?,?\s+(?:{STREET_WORDS})\b(?:\s+[\w'’-]+){{1,3}}"
                     rf"|\b(?:{STREET_WORDS})\s+(?:[\w'’-]+\s+){{0,3}}?\d{{1,4}}[a-z]?\b)", re.IGNORECASE)
# Words that introduce a name, per language (lower case; Arabic/Persian/Tigrinya as written).
NAME_CUES: Tuple[Tuple[str, ...], ...] = (
    ("my", "name", "is"), ("name", "is"), ("i", "am", "called"), ("call", "me"), ("my", "name's"),
    ("je", "m'appelle"), ("je", "m’appelle"), ("moi", "c'est"), ("mon", "nom", "est"), ("mon", "nom", "c'est"),
    ("me", "llamo"), ("mi", "nombre", "es"), ("soy",),
    ("اسمي",), ("إسمي",), ("انا", "اسمي"), ("ismi",), ("esmi",), ("asmi",), ("اسمم",), ("اسم", "من"), ("esmam",),
    ("esme", "man"), ("nam", "e", "man"), ("namam",), ("ስመይ",), ("smey",), ("shmey",), ("ሽመይ",),
    ("mr",), ("mrs",), ("ms",), ("dr",), ("monsieur",), ("madame",), ("señor",), ("señora",), ("sr",), ("sra",),
    ("brother",), ("sister",), ("cousin",), ("frère",), ("sœur",), ("hermano",), ("hermana",), ("primo",),
)
# Words that introduce where someone lives (the next word is a place, unless it is a country).
PLACE_CUES: Tuple[Tuple[str, ...], ...] = (
    ("live", "in"), ("living", "in"), ("live", "at"), ("staying", "in"), ("stay", "in"), ("i'm", "in"),
    ("habite", "à"), ("habite", "a"), ("habite",), ("j'habite", "à"), ("j'habite",), ("j’habite", "à"),
    ("j’habite",), ("à",), ("in",), ("en",), ("near",), ("près", "de"), ("cerca", "de"), ("vis", "à"), ("vivo", "en"), ("vivimos", "en"), ("wohne", "in"),
    ("ساكن", "في"), ("ساكنة", "في"), ("ساكن", "ب"), ("عايش", "في"), ("عايشة", "في"), ("sakin", "fi"), ("sakna", "fi"),
    ("3ayesh", "fi"), ("sakin", "b"), ("dar",), ("در", "شهر"), ("ኣብ",),
)
# Words after a cue that are not names (so "I am called back tomorrow" keeps "back").
NOT_NAMES = frozenset("a an the not no back here there from in at to and or but very so de la le el del y e o "
                      "un une una muy ici aqui aquí and is am à les des on at by".split())


@lru_cache(maxsize=1)
def _nlp():
    import spacy
    from spacy.matcher import Matcher

    nlp = spacy.blank("xx")
    matcher = Matcher(nlp.vocab)
    for index, cue in enumerate(NAME_CUES):
        matcher.add(f"cue{index}", [[{"LOWER": word} for word in cue]])
    places = Matcher(nlp.vocab)
    for index, cue in enumerate(PLACE_CUES):
        places.add(f"place{index}", [[{"LOWER": word} for word in cue]])
    return nlp, matcher, places


@lru_cache(maxsize=1)
def _cities() -> Tuple[frozenset, int]:
    from bot.services import _place_names

    names = frozenset(name for name, place in _place_names() if place.city and len(name) >= 4)
    return names, max((len(n.split()) for n in names), default=1)


def _name_spans(text: str) -> List[Tuple[int, int]]:
    nlp, matcher, _ = _nlp()
    doc = nlp(text)
    spans = []
    for _, start, end in matcher(doc):
        taken = []
        for token in doc[end:end + 3]:
            word = token.text
            if token.is_punct or token.like_num or word.lower() in NOT_NAMES or word.startswith("<"):
                break
            cue_is_title = doc[start].lower_ in {"mr", "mrs", "ms", "dr", "monsieur", "madame", "señor", "señora",
                                                 "sr", "sra", "brother", "sister", "cousin", "frère", "sœur",
                                                 "hermano", "hermana", "primo", "soy"}
            if cue_is_title and not word[:1].isupper():
                break  # "my brother works" is not a name; "my brother Karim" is
            taken.append(token)
            if len(taken) == 2 or not (len(doc) > token.i + 1 and doc[token.i + 1].text[:1].isupper()):
                break
        if taken:
            spans.append((taken[0].idx, taken[-1].idx + len(taken[-1].text)))
    return spans


def _place_spans(text: str) -> List[Tuple[int, int]]:
    from bot.languages import normalise

    cities, longest = _cities()
    nlp, _, place_cues = _nlp()
    doc = nlp(text)
    spans = []
    for _, start, end in place_cues(doc):
        if end < len(doc):
            token = doc[end]
            latin = token.text[:1].isascii() and token.text[:1].isalpha()
            if (token.is_alpha and (token.text[:1].isupper() or not latin) and token.lower_ not in NOT_NAMES
                    and not _is_country(token.text)):
                spans.append((token.idx, token.idx + len(token.text)))
    tokens = [t for t in doc if not t.is_punct]
    i = 0
    while i < len(tokens):
        for size in range(min(longest, len(tokens) - i), 0, -1):
            window = tokens[i:i + size]
            if normalise(" ".join(t.text for t in window)) in cities:
                spans.append((window[0].idx, window[-1].idx + len(window[-1].text)))
                i += size - 1
                break
        i += 1
    return spans


@lru_cache(maxsize=1)
def _countries() -> frozenset:
    from bot.services import _place_names

    return frozenset(name for name, place in _place_names() if place.city is None)


@lru_cache(maxsize=1)
def _language_words() -> frozenset:
    """Names of languages as people write them (content files' `language_names`): "in English" is no place."""
    import yaml

    from bot.languages import normalise
    from bot.settings import ROOT

    words = set()
    for path in (ROOT / "data" / "content").glob("*.yml"):
        names = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("language_names") or {}
        words.update(normalise(str(n)) for variants in names.values() for n in variants or [])
    return frozenset(words)


def _is_country(word: str) -> bool:
    from bot.languages import normalise

    return normalise(word) in _countries() or normalise(word) in _language_words()


def _replace(text: str, spans: List[Tuple[int, int]], tag: str) -> str:
    merged: List[Tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    for start, end in reversed(merged):
        text = text[:start] + tag + text[end:]
    return text


def redact(text: str) -> str:
    """The message with personal data replaced by <TAGS>."""
    text = EMAIL.sub("<EMAIL>", text)
    text = ADDRESS.sub("<ADDRESS>", text)
    text = PHONE.sub("<PHONE>", text)
    text = DOCUMENT.sub("<NUMBER>", text)
    text = _replace(text, _name_spans(text), "<NAME>")
    text = _replace(text, _place_spans(text), "<PLACE>")
    return re.sub(r"\s+", " ", text).strip()

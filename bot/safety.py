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
from typing import Any, Dict, FrozenSet, List, Optional, Tuple

import yaml

try:  # Python 3.10's parser of regular expressions (private; moved in 3.11): only for the quick test below
    import _sre
    import sre_compile
    import sre_constants as C
    import sre_parse

    _IGNORECASE_FIXES = sre_compile._ignorecase_fixes
except (ImportError, AttributeError):  # then every pattern is searched, as before the quick test
    sre_parse = None
    _IGNORECASE_FIXES = {}

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


# -- a quick test that rules a pattern out before its search --------------------------------------------
# A message is checked against every pattern of every language (some 3,000). Most cannot match because the
# message lacks a piece of text every match of theirs contains ("passport", an Arabic word): a substring
# test rules them out far faster than the regular expression's search.
_MAX_CLASS = 64  # a character class larger than this is not worth listing
GRAM = 3  # pieces are indexed by their first three characters


# Characters Python's case-insensitive matching treats as one (i and dotless ı, σ and ς, long ſ and s...),
# each mapped to one representative. A pattern's pieces and the message are both written with it.
_FOLD = {code: chr(min((code,) + same)) for code, same in _IGNORECASE_FIXES.items()
         if min((code,) + same) != code}


def fold(text: str) -> str:
    """A lower-cased message as the pieces are written (see _FOLD)."""
    return text.translate(_FOLD)


def _folded(code: int) -> str:
    """The character a case-insensitive pattern's literal `code` stands for in a folded message: its
    lower case as the regular expression engine computes it (one character, unlike str.lower for İ)."""
    return fold(chr(_sre.unicode_tolower(code)))


def _cost(needles: FrozenSet[str]) -> Tuple[int, int]:
    return (-min(len(n) for n in needles), len(needles))  # longer pieces rule out more, fewer test faster


def _required(items) -> Optional[FrozenSet[str]]:
    """Pieces of text of which every match of this parsed sequence contains at least one, or None when no
    such set is known (then the pattern is always searched). Only what is certain: an optional part, a
    negated or category class, a back reference or a negative look-around gives nothing."""
    options = []
    run = ""  # consecutive literals

    def close_run() -> None:
        nonlocal run
        if run:
            options.append(frozenset([run]))
        run = ""

    for op, av in items:
        found: Optional[FrozenSet[str]] = None
        if op is C.LITERAL:
            run += _folded(av)
            continue
        elif op is C.IN:
            chars = set()
            for kind, value in av:
                if kind is C.LITERAL:
                    chars.add(_folded(value))
                elif kind is C.RANGE and value[1] - value[0] < _MAX_CLASS:
                    chars.update(_folded(code) for code in range(value[0], value[1] + 1))
                else:  # NEGATE, CATEGORY (\w, \d...), a large range
                    chars = set()
                    break
            found = frozenset(chars) or None
        elif op is C.SUBPATTERN:
            found = _required(av[-1])
        elif op is C.ASSERT:  # a positive look-around: what it looks for is in the message too
            found = _required(av[1])
        elif op is C.BRANCH:
            union = set()
            for branch in av[1]:
                one = _required(branch)
                if one is None:
                    union = set()
                    break
                union |= one
            found = frozenset(union) or None
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT) and av[0] >= 1:
            found = _required(av[2])
        close_run()
        if found:
            options.append(found)
    close_run()
    return min(options, key=_cost) if options else None


def required_pieces(pattern: str) -> Optional[FrozenSet[str]]:
    """For a pattern compiled with re.IGNORECASE: pieces of text of which any normalised message it matches
    contains at least one, once folded (`fold`); None when unknown. Exact by construction; a test compares
    the lexicon's answers with and without this check on every training and safety example."""
    if sre_parse is None:
        return None
    try:
        return _required(sre_parse.parse(pattern, re.IGNORECASE))
    except (re.error, RecursionError, AttributeError):
        return None


@dataclass(frozen=True)
class Match:
    category: str
    language: str
    pattern: str


class SafetyLexicon:
    def __init__(self, directory: Path = LEXICON_DIR) -> None:
        self.patterns: List[Tuple[str, str, re.Pattern]] = []  # (language, category, compiled)
        self.languages: List[str] = []
        always: List[int] = []  # patterns with no known pieces: always searched
        by_piece: Dict[str, List[int]] = {}  # piece -> the patterns that need it (or another of theirs)
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
                    pieces = required_pieces(str(pattern))
                    if pieces is None:
                        always.append(len(self.patterns) - 1)
                    for piece in pieces or ():
                        by_piece.setdefault(piece, []).append(len(self.patterns) - 1)
        self._always = frozenset(always)
        self._by_piece = by_piece
        # A piece is looked up by its first GRAM characters, which a message holds wherever it holds the piece.
        self._by_gram: Dict[str, List[str]] = {}
        for piece in by_piece:
            self._by_gram.setdefault(piece[:GRAM], []).append(piece)
        self._ranks: Dict[Optional[str], List[int]] = {}

    def _rank(self, language: Optional[str]) -> List[int]:
        """Each pattern's place in the search order: the message's language first, then file order."""
        rank = self._ranks.get(language)
        if rank is None:
            order = sorted(range(len(self.patterns)), key=lambda i: bool(language) and self.patterns[i][0] != language)
            rank = [0] * len(order)
            for place, index in enumerate(order):
                rank[index] = place
            self._ranks[language] = rank
        return rank

    def _candidates(self, normal: str) -> set:
        """The patterns that can match `normal`: those with a piece in it, and those with no known pieces."""
        grams = {normal[i:i + k] for k in range(1, GRAM + 1) for i in range(len(normal) - k + 1)}
        found = set(self._always)
        by_gram, by_piece = self._by_gram, self._by_piece
        for gram in grams:
            for piece in by_gram.get(gram, ()):
                if len(piece) <= GRAM or piece in normal:
                    found.update(by_piece[piece])
        return found

    def match(self, text: str, language: Optional[str] = None) -> Optional[Match]:
        """The first matching pattern, trying the message's language first, then every other one."""
        normal = normalise(text)
        if not normal:
            return None
        # Only patterns with a piece of text in the message are searched, in the same order as all would be.
        for index in sorted(self._candidates(fold(normal)), key=self._rank(language).__getitem__):
            lang, category, compiled = self.patterns[index]
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

from collections import Counter

import pytest
import yaml

from bot.languages import load_nlu_examples
from bot.settings import ROOT
from tests.conftest import LAUNCH_LANGUAGES

DOCS = (ROOT / "docs" / "intents.md").read_text(encoding="utf-8")
BUTTONS_ONLY = {line.split("`")[1] for line in DOCS.splitlines() if line.startswith("| `") and "**buttons only**" in line}


def _by_intent(lang):
    data = yaml.safe_load((ROOT / "data" / "nlu" / f"{lang}.yml").read_text(encoding="utf-8"))
    result = {}
    for block in data["nlu"]:
        result.setdefault(block["intent"], []).extend(
            l.strip()[2:].strip() for l in block["examples"].splitlines() if l.strip().startswith("- "))
    return result


@pytest.mark.parametrize("lang", LAUNCH_LANGUAGES)
def test_every_intent_has_at_least_25_examples(domain, lang):
    counts = {i: len(e) for i, e in _by_intent(lang).items()}
    assert BUTTONS_ONLY == {"inform"}
    assert set(counts) == set(domain["intents"]) - BUTTONS_ONLY
    assert {i: n for i, n in counts.items() if n < 25} == {}


@pytest.mark.parametrize("lang", LAUNCH_LANGUAGES)
def test_no_example_is_repeated_or_shared_between_intents(lang):
    texts = [t.casefold() for examples in _by_intent(lang).values() for t in examples]
    assert [t for t, n in Counter(texts).items() if n > 1] == []


def test_no_text_has_two_intents_across_languages():
    """Rasa refuses the same text under two intents, even in different language files."""
    seen = {}
    for lang in LAUNCH_LANGUAGES:
        for intent, examples in _by_intent(lang).items():
            for text in examples:
                seen.setdefault(text, set()).add(intent)
    assert {t: sorted(i) for t, i in seen.items() if len(i) > 1} == {}


def test_every_intent_is_documented(domain):
    assert [i for i in domain["intents"] if f"`{i}`" not in DOCS] == []


def test_no_example_starts_with_a_slash():
    for lang, examples in load_nlu_examples().items():
        assert [e for e in examples if e.startswith("/")] == [], lang


@pytest.mark.parametrize("lang, script", [("ar", "\u0600-\u06ff"), ("fa", "\u0600-\u06ff"), ("ti", "\u1200-\u137f"),
                                          ("ps", "\u0600-\u06ff"), ("ur", "\u0600-\u06ff"), ("bn", "\u0980-\u09ff"),
                                          ("ka", "\u10a0-\u10ff"), ("ru", "\u0400-\u04ff")])
def test_native_script_and_latin_script_are_both_present(lang, script):
    import re

    examples = load_nlu_examples()[lang]
    native = [e for e in examples if re.search(f"[{script}]", e)]
    latin = [e for e in examples if re.fullmatch(r"[\x00-\x7f\u00c0-\u024f’']+", e)]
    assert len(native) > len(examples) / 2
    if lang in ("ar", "fa", "ps", "ur", "bn", "ka"):  # Arabizi, Finglish, Roman Urdu, Banglish… as people type them
        assert len(latin) >= len(examples) / 10

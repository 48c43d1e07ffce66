import pytest
from rasa.shared.nlu.training_data.message import Message

from bot.nlu.safety_priority import SafetyPriority
from bot.safety import CATEGORIES, SafetyLexicon, normalise
from tests.conftest import LAUNCH_LANGUAGES

SAFETY = list(CATEGORIES)


@pytest.fixture(scope="module")
def lex():
    return SafetyLexicon()


def test_every_launch_language_has_every_category(lex):
    """Patterns in every category, and patterns that work: the lexicon alone catches at least 40% of the
    language's own safety training examples in each category (the classifier is the other net; the
    independent safety sets measure both together in `make evaluate`). This replaced "at least 20
    patterns", which said nothing about what they catch (some new languages use fewer, broader ones)."""
    import yaml

    from bot.settings import ROOT

    counts = lex.counts()
    weak = {}
    for lang in LAUNCH_LANGUAGES:
        assert lang in counts, lang
        assert all(counts[lang].get(c, 0) >= 10 for c in CATEGORIES), (lang, counts[lang])
        data = yaml.safe_load((ROOT / "data" / "nlu" / f"{lang}.yml").read_text(encoding="utf-8"))
        for block in data["nlu"]:
            if block["intent"] in CATEGORIES:
                examples = [l.strip()[2:].strip() for l in block["examples"].splitlines() if l.strip().startswith("- ")]
                caught = sum(1 for e in examples if lex.match(e, lang))
                if caught < 0.4 * len(examples):
                    weak[(lang, block["intent"])] = f"{caught}/{len(examples)}"
    assert weak == {}


def test_normalisation_removes_what_keyboards_add():
    assert normalise("  سـلام\u200b  WORLD ") == "سلام world"
    assert normalise("می\u200cخواهم") == "می\u200cخواهم"  # Persian keeps its zero-width non-joiner


def test_a_bad_pattern_is_reported_with_its_file(tmp_path):
    (tmp_path / "xx.yml").write_text("language: xx\n" + "".join(f"{c}: ['ok']\n" for c in CATEGORIES[:-1])
                                     + f"{CATEGORIES[-1]}: ['(unclosed']\n")
    from bot.errors import ContentError

    with pytest.raises(ContentError) as info:
        SafetyLexicon(tmp_path)
    assert "xx.yml" in str(info.value) and CATEGORIES[-1] in str(info.value)


def run(text, intent="ask_travel_documents", confidence=0.9):
    component = SafetyPriority({"intents": SAFETY, "threshold": 0.2})
    message = Message(data={"text": text, "intent": {"name": intent, "confidence": confidence},
                            "intent_ranking": [{"name": intent, "confidence": confidence}]})
    component.process([message])
    return message.get("intent")


def test_the_lexicon_overrides_the_classifier(lex):
    found = lex.match("my boss keeps my passport and says I must pay back the debt first")
    assert found is not None and found.category == "trafficking"
    intent = run("my boss keeps my passport and says I must pay back the debt first")
    assert intent["name"] == "trafficking" and intent["promoted_by"] == "safety_lexicon"


def test_ordinary_questions_and_payloads_are_left_alone():
    assert run("how much money do I get if I go back voluntarily?", "ask_money_support")["name"] == "ask_money_support"
    assert run('/inform{"in_detention":"yes"}', "inform")["name"] == "inform"


@pytest.mark.slow
def test_no_lexicon_fires_on_an_ordinary_training_example_of_any_language(lex):
    """Every language's patterns are tried on every message. When Roman Urdu, Banglish and Latin-script
    Georgian arrived, bare words of older lexicons fired on them (French "ase", English "trafficking",
    Spanish "sos"...): each would have sent an ordinary question to the urgent queue."""
    import yaml

    from bot.settings import ROOT

    fired = []
    for path in sorted((ROOT / "data" / "nlu").glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        for block in data["nlu"]:
            if block["intent"] in CATEGORIES:
                continue
            for line in block["examples"].splitlines():
                text = line.strip()[2:].strip() if line.strip().startswith("- ") else None
                if text:
                    match = lex.match(text, path.stem)
                    if match:
                        fired.append((path.stem, block["intent"], text, match.language, match.category))
    assert fired == []


def _naive_match(lex, text, language):
    """The lexicon's rule written plainly: every pattern in order, the message's language first."""
    normal = normalise(text)
    if not normal:
        return None
    ordered = sorted(lex.patterns, key=lambda p: p[0] != language) if language else lex.patterns
    for lang, category, compiled in ordered:
        if compiled.search(normal):
            return (category, lang, compiled.pattern)
    return None


def test_skipping_patterns_by_their_pieces_changes_no_answer(lex):
    """`match` searches only patterns with a required piece of text in the message (18 times faster on
    the training data); its answers must be exactly those of searching every pattern: on every safety
    test message, every 15th training example, upper-cased ones and ones with no language given."""
    import yaml

    from bot.settings import ROOT

    texts = []
    for path in sorted((ROOT / "data" / "nlu").glob("*.yml")):
        for block in yaml.safe_load(path.read_text(encoding="utf-8"))["nlu"]:
            lines = [l.strip()[2:].strip() for l in block["examples"].splitlines() if l.strip().startswith("- ")]
            texts += [(t, path.stem) for t in lines[::15]]

    def strings(value):
        if isinstance(value, str):
            yield value
        elif isinstance(value, list):
            for item in value:
                yield from strings(item)
        elif isinstance(value, dict):
            for key, item in value.items():
                if key != "language":
                    yield from strings(item)

    for path in sorted((ROOT / "tests" / "safety").rglob("*.yml")):
        texts += [(t, path.stem) for t in strings(yaml.safe_load(path.read_text(encoding="utf-8")))]
    texts += [(t.upper(), lang) for t, lang in texts[::4]] + [(t, None) for t, lang in texts[::6]]
    found = [lex.match(t, lang) for t, lang in texts]
    assert [(m.category, m.language, m.pattern) if m else None for m in found] == \
        [_naive_match(lex, t, lang) for t, lang in texts]
    assert sum(m is not None for m in found) > 1000  # the comparison covered many matches, not only misses


@pytest.mark.parametrize("pattern,pieces", [
    (r"help me", {"help me"}),
    (r"\b(?:kill|hurt)\w* me\b", {"kill", "hurt"}),  # the longer requirement wins over " me"
    (r"(?:very )?scared", {"scared"}),  # an optional part requires nothing
    (r"\w+", None),
    (r"[^a]x", {"x"}),
    (r"(?!police).*prison", {"prison"}),  # a negative look-ahead requires nothing, the rest does
    (r"(?=.*passport)", {"passport"}),  # a positive one does
    (r"a?", None),
    (r"ΣΟΣ", {"ςος"}),  # σ and ς are one letter to re.IGNORECASE: both written ς (bot.safety.fold)
    (r"prİson", {"prison"}),  # re lower-cases İ to i (str.lower gives two characters)
])
def test_the_pieces_a_pattern_requires(pattern, pieces):
    from bot.safety import required_pieces

    assert required_pieces(pattern) == (frozenset(pieces) if pieces is not None else None)


def test_a_pattern_matches_wherever_its_pieces_say_it_can():
    """Where re.IGNORECASE matches, a piece is found in the folded message: upper case in the pattern,
    final sigma, dotless i, long s, old Cyrillic letter forms."""
    import re

    from bot.safety import fold, required_pieces

    for pattern, text in (("PASSPORT", "my passport"), ("ΣΟΣ", "σος"), ("ΣΟΣ", "σοσ"), ("prison", "prıson"),
                          ("İstanbul", "istanbul"), ("help", "help"), ("помощь", "пᲂмощь"), ("(?:very )?sad", "ſad")):
        pieces = required_pieces(pattern)
        assert pieces, pattern
        assert re.search(pattern, normalise(text), re.IGNORECASE), (pattern, text)
        assert any(p in fold(normalise(text)) for p in pieces), (pattern, text, pieces)


def test_without_the_regular_expression_parser_every_pattern_is_searched(monkeypatch):
    """bot.safety uses Python 3.10's private sre_parse only to skip patterns; should a Python upgrade move
    it, the lexicon must still load and find the same things (by searching every pattern)."""
    import bot.safety as safety

    monkeypatch.setattr(safety, "sre_parse", None)
    plain = SafetyLexicon()
    assert len(plain._always) == len(plain.patterns)
    found = plain.match("my boss keeps my passport and says I must pay back the debt first")
    assert found is not None and found.category == "trafficking"

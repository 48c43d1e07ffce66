import pytest

from bot.languages import LanguageDetector, detector, find_named_language, load_nlu_examples, normalise
from bot.training import split_examples
from bot.settings import ROOT


@pytest.mark.parametrize("text, code", [
    ("speak French", "fr"), ("بالعربي", "ar"), ("بالعربية من فضلك", "ar"), ("in Farsi please", "fa"),
    ("دری", "fa"), ("tigrinya", "ti"), ("ትግርኛ", "ti"), ("hablame en ingles", "en"), ("en français", "fr"),
    ("ESPAÑOL", "es"),
])
def test_language_names_in_every_script(text, code):
    assert find_named_language(text) == code


@pytest.mark.parametrize("text", ["hello", "I need a lawyer", "English or French", "fresh bread"])
def test_no_or_several_named_languages(text):
    assert find_named_language(text) is None


def test_normalise_folds_variants():
    assert normalise("Français") == normalise("francais")
    assert normalise("كيف") == normalise("کیف")


def test_detector_needs_two_languages():
    with pytest.raises(ValueError):
        LanguageDetector({"en": ["hello"]})


def test_short_text_is_not_guessed():
    assert detector().detect("ok") is None


def test_detection_on_held_out_examples_is_reliable():
    """Trained on the training split only; on held-out text a wrong guess must be rare."""
    train, test = split_examples(ROOT / "data" / "nlu")
    d = LanguageDetector({lang: [t for items in intents.values() for t in items] for lang, intents in train.items()})
    for lang, pairs in test.items():
        guesses = [d.detect(text) for text, _ in pairs]
        wrong = sum(1 for g in guesses if g is not None and g != lang)
        right = sum(1 for g in guesses if g == lang)
        assert wrong / len(pairs) <= 0.05, (lang, wrong, len(pairs))
        assert right / len(pairs) >= 0.7, (lang, right, len(pairs))

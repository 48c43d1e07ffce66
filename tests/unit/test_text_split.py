import pytest

from bot.channels.text import split_for, split_text


def test_short_text_is_one_piece():
    assert split_text("Hello.", 10) == ["Hello."]


def test_splits_at_sentence_ends_within_the_limit():
    text = "First sentence here. Second one is here! Third? Fourth."
    pieces = split_text(text, 25)
    assert all(len(p) <= 25 for p in pieces)
    assert pieces[0] == "First sentence here."
    assert " ".join(pieces) == text


@pytest.mark.parametrize("text", ["سلام. این یک جمله است؟ بله، درست است.", "ሰላም። እዚ ሓደ ሓረግ እዩ። እወ።",
                                  "مرحبا. هذه جملة؟ نعم."])
def test_other_scripts_split_at_their_own_sentence_marks(text):
    pieces = split_text(text, 20)
    assert all(len(p) <= 20 for p in pieces) and len(pieces) >= 2
    assert "".join(pieces).replace(" ", "") == text.replace(" ", "")


def test_a_sentence_longer_than_the_limit_is_cut_between_words():
    text = "word " * 30
    pieces = split_text(text, 22)
    assert all(len(p) <= 22 for p in pieces)
    assert all(not p.startswith(" ") and not p.endswith(" ") for p in pieces)
    assert " ".join(pieces) == text.strip()


def test_paragraph_breaks_are_kept_inside_a_piece():
    text = "One.\n\nTwo."
    assert split_text(text, 100) == [text]


def test_buttons_go_on_the_last_part_and_many_buttons_make_more_parts():
    buttons = [{"title": str(i), "payload": f"/p{i}"} for i in range(12)]
    parts = split_for("A. " * 30, buttons, text_limit=40, body_limit=20, buttons_per_message=10)
    assert all(not p.buttons for p in parts[:-2])
    assert [len(p.buttons) for p in parts[-2:]] == [10, 2]
    assert all(len(p.text) <= 40 for p in parts) and len(parts[-2].text) <= 20


def test_empty_text_with_buttons_still_has_a_body():
    parts = split_for("", [{"title": "A", "payload": "/a"}], text_limit=100)
    assert parts[0].text and parts[0].buttons


def test_line_breaks_between_bullets_survive_a_split():
    bullets = "\n".join(f"• Point number {i} of the notice, which is long enough to matter." for i in range(30))
    pieces = split_text("Heading:\n\n" + bullets, 1024)
    assert len(pieces) > 1
    assert all("\n• " in p or p.count("•") <= 1 for p in pieces)
    assert "\n".join(pieces).replace("\n\n", "\n").count("\n•") >= 28

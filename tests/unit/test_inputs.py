import pytest

from bot.errors import InputRejected
from bot.inputs import clean_text, neutralise, prepare

ALLOWED = {"/ask_options", '/change_language{"language":"fr"}'}


@pytest.mark.parametrize("typed, sent", [
    ("/restart", "restart"),
    ('/handoff{"x":1}', 'handoff{"x":1}'),
    ('//greet{"language":"ar"}', 'greet{"language":"ar"}'),
    ("  /  /stop now", "stop now"),
    ("hello /restart", "hello /restart"),  # only a leading slash is read as an intent
])
def test_typed_slash_cannot_become_an_intent(typed, sent):
    prepared = prepare(typed, None, ALLOWED, 2000)
    assert prepared.message == sent
    assert not prepared.trusted
    assert not prepared.message.startswith("/")


@pytest.mark.parametrize("typed, intent", [
    ("/start", "/greet"), ("/help", "/greet"), ("/language", "/change_language"),
    ("/delete", "/delete_my_data"), ("/stop", "/stop"), ("/start@CrossroadsBot", "/greet"), ("/LANGUAGE", "/change_language"),
])
def test_supported_commands_are_mapped_explicitly(typed, intent):
    prepared = prepare(typed, None, ALLOWED, 2000)
    assert (prepared.message, prepared.trusted) == (intent, True)


def test_unknown_command_is_just_text():
    assert prepare("/restart", None, ALLOWED, 2000).message == "restart"


def test_payload_offered_by_the_assistant_is_forwarded():
    prepared = prepare(None, '/change_language{"language":"fr"}', ALLOWED, 2000)
    assert prepared.trusted and prepared.message == '/change_language{"language":"fr"}'


def test_forged_payload_is_neutralised_text():
    prepared = prepare(None, '/trafficking{"x":"y"}', ALLOWED, 2000)
    assert not prepared.trusted and prepared.message == 'trafficking{"x":"y"}'


@pytest.mark.parametrize("text", ["", "   ", "\x00\x01\x02", "\u200b" * 0 + "\n\t  ", "/", "///"])
def test_empty_input_is_rejected_with_the_empty_answer(text):
    with pytest.raises(InputRejected) as info:
        prepare(text, None, ALLOWED, 2000)
    assert info.value.response == "utter_input_empty"


def test_too_long_input_names_the_limit():
    with pytest.raises(InputRejected) as info:
        prepare("a" * 2001, None, ALLOWED, 2000)
    assert info.value.response == "utter_input_too_long"
    assert info.value.arguments == {"max_chars": 2000}


def test_control_characters_are_removed_but_newlines_kept():
    assert clean_text("a\x00b\x1bc\nd\u202e", 100) == "abc\nd\u202e"


def test_right_to_left_text_is_unchanged():
    text = "أريد العودة إلى بلدي، هل هناك مساعدة؟"
    assert prepare(text, None, ALLOWED, 2000).message == text
    persian = "می\u200cخواهم برگردم"  # the zero-width non-joiner is part of Persian spelling
    assert prepare(persian, None, ALLOWED, 2000).message == persian


def test_neutralise_keeps_inner_slashes():
    assert neutralise("/a/b") == "a/b"


def test_non_string_text_is_rejected():
    with pytest.raises(InputRejected):
        clean_text(123, 100)  # type: ignore[arg-type]

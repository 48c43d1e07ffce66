"""bot.rasa_nlg.ContentNLG: answers rendered in the Rasa server, in the right language, with that language."""

import pytest
import yaml
from rasa.core.actions.action import create_bot_utterance
from rasa.shared.core.events import SlotSet, UserUttered
from rasa.shared.core.slots import TextSlot
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.exceptions import RasaException
from rasa.utils.endpoints import EndpointConfig

from bot.content import ContentStore
from bot.rasa_channel import GatewayOutput
from bot.rasa_nlg import ContentNLG, plausible_response


def tracker(slot=None, sent=None):
    events = [UserUttered("hi", metadata={"language": sent} if sent else {})]
    if slot:
        events.append(SlotSet("language", slot))
    return DialogueStateTracker.from_events("c1", events, slots=[TextSlot("language", mappings=[])])


@pytest.fixture(scope="module")
def nlg():
    return ContentNLG(EndpointConfig(type="bot.rasa_nlg.ContentNLG"))


@pytest.mark.parametrize("slot,sent,argument,expected", [
    ("fr", "en", None, "fr"),  # the slot: the language the person chose in Rasa
    ("fr", "en", "ar", "ar"),  # an action's explicit language argument beats the slot
    (None, "fa", None, "fa"),  # no slot yet: the language the gateway sent with the message
    ("zz", "es", None, "es"),  # a slot value we have no content for
    (None, None, None, "en"),  # nothing known: English
])
async def test_the_answer_is_in_the_language_of_argument_slot_then_gateway(nlg, content, slot, sent, argument,
                                                                          expected):
    arguments = {"language": argument} if argument else {}
    answer = await nlg.generate("utter_greet", tracker(slot, sent), "gateway", **arguments)
    assert answer["language"] == expected
    assert answer["text"] == content.render("utter_greet", expected).text
    assert plausible_response(answer)


async def test_every_response_renders_as_the_gateway_renders_it(nlg, content):
    """The same content files, the same renderer: what /nlg answered before, in every language."""
    for code in content.languages:
        for response in content.languages["en"].responses:
            answer = await nlg.generate(response, tracker(code), "gateway", place="Lyon", domain_responses={})
            expected = content.render(response, code, {"place": "Lyon"})
            assert (answer["text"], answer["buttons"]) == (expected.text, expected.buttons), (code, response)


async def test_an_unknown_response_fails_the_turn(nlg):
    with pytest.raises(RasaException):
        await nlg.generate("utter_no_such_thing", tracker("en"), "gateway")


def test_the_content_folder_comes_from_the_endpoint_or_the_environment(tmp_path, monkeypatch):
    data = yaml.safe_load((ContentStore().content_dir / "en.yml").read_text(encoding="utf-8"))
    data["responses"]["utter_greet"]["text"] = "Hello from the other folder"
    (tmp_path / "en.yml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    from_endpoint = ContentNLG(EndpointConfig(type="x", content_dir=str(tmp_path)))
    monkeypatch.setenv("CONTENT_DIR", str(tmp_path))
    from_environment = ContentNLG(EndpointConfig(type="x"))
    for nlg in (from_endpoint, from_environment):
        assert nlg.content.render("utter_greet", "en").text == "Hello from the other folder"
        assert list(nlg.content.languages) == ["en"]


async def test_the_language_reaches_the_gateway_with_the_answer(nlg, content):
    """Through Rasa's own path: the generated answer becomes a BotUttered event, whose message our
    channel collects; the language must survive both."""
    output = GatewayOutput()
    for response in ("utter_goodbye", "utter_options"):  # text only, then text with buttons
        answer = await nlg.generate(response, tracker("ar"), "gateway")
        answer["utter_action"] = response
        await output.send_response("c1", create_bot_utterance(answer).message())
    assert [m["language"] for m in output.messages] == ["ar", "ar"]
    assert output.messages[0]["text"] == content.render("utter_goodbye", "ar").text
    assert output.messages[1]["buttons"] == content.render("utter_options", "ar").buttons


async def test_an_answer_without_a_language_is_collected_as_before():
    output = GatewayOutput()
    await output.send_response("c1", {"text": "plain", "buttons": None})
    assert output.messages == [{"recipient_id": "c1", "text": "plain"}]

import pytest
import json

from sqlalchemy import select

from bot.db import Conversation, Message
from bot.conversation import Incoming
from bot.privacy import erase_conversation, pseudonym


async def test_rasa_sees_a_pseudonym_and_neutralised_text(service, fake_rasa, settings, db):
    outcome = await service.handle("webchat", "user-0001", text="/restart")
    sent = fake_rasa.received[-1]
    assert sent["message"] == "restart"
    assert sent["sender"] == pseudonym("webchat", "user-0001", settings.pseudonym_key)
    assert "user-0001" not in json.dumps(fake_rasa.received)
    assert outcome.conversation_id == sent["sender"]


async def test_language_goes_to_rasa_in_the_metadata(service, fake_rasa):
    await service.handle("webchat", "user-0002", text="hola", language_hint="es-ES")
    assert fake_rasa.received[-1]["metadata"] == {"language": "es", "channel": "webchat"}


async def test_first_turn_offers_the_language_menu_and_the_privacy_notice_once(service, content):
    first = await service.handle("webchat", "user-0003", text="hello")
    notice = content.render("utter_privacy_notice", "en", service.privacy_arguments())
    assert first.replies[-2].buttons == content.language_buttons()
    assert (first.replies[-1].text, first.replies[-1].buttons) == (notice.text, notice.buttons)
    assert "30 days" in notice.text and "30 minutes" in notice.text  # the settings' values, filled in
    second = await service.handle("webchat", "user-0003", text="hello again")
    assert all(r.buttons != content.language_buttons() and r.text != notice.text for r in second.replies)


async def test_detected_language_is_told_to_rasa_before_the_message(service, fake_rasa):
    service.test_detections["مرحبا، أريد المساعدة"] = "ar"
    outcome = await service.handle("webchat", "user-0004", text="مرحبا، أريد المساعدة", language_hint="en")
    messages = [r["message"] for r in fake_rasa.received]
    assert messages == ['/change_language{"language":"ar"}', "مرحبا، أريد المساعدة"]
    assert outcome.language == "ar" and outcome.direction == "rtl"


async def test_detection_does_not_override_a_chosen_language(service, fake_rasa, db):
    await service.handle("webchat", "user-0005", payload='/change_language{"language":"fr"}')
    cid = fake_rasa.received[-1]["sender"]
    service.record_language(cid, "fr", source="chosen")
    service.test_detections["hello there friend"] = "en"
    await service.handle("webchat", "user-0005", text="hello there friend")
    assert [r["message"] for r in fake_rasa.received][-1] == "hello there friend"
    assert not any(r["message"] == '/change_language{"language":"en"}' for r in fake_rasa.received)


async def test_empty_and_oversize_messages_never_reach_rasa(service, fake_rasa, content):
    empty = await service.handle("webchat", "user-0006", text="   \x00 ")
    long = await service.handle("webchat", "user-0006", text="x" * 5000)
    assert fake_rasa.received == []
    assert empty.replies[0].text == content.render("utter_input_empty", "en").text
    assert "2000" in long.replies[0].text


async def test_rasa_down_gives_the_delayed_answer_in_the_users_language(service, fake_rasa, content):
    await service.handle("webchat", "user-0007", payload='/change_language{"language":"fa"}')
    service.record_language(fake_rasa.received[-1]["sender"], "fa", "chosen")
    fake_rasa.down = True
    outcome = await service.handle("webchat", "user-0007", text="سلام")
    assert outcome.replies[0].text == content.render("utter_answer_delayed", "fa").text


async def test_buttons_from_rasa_reach_the_user(service, fake_rasa):
    fake_rasa.answer = lambda body: [{"text": "t", "buttons": [{"title": "A", "payload": "/ask_options"}, {"x": 1}]}]
    outcome = await service.handle("webchat", "user-0008", text="options please")
    assert outcome.replies[0].buttons == [{"title": "A", "payload": "/ask_options"}]


async def test_both_sides_are_stored_for_the_transcript_when_the_person_agrees(service, db):
    await service.handle("webchat", "user-0009", payload="/privacy_keep")
    outcome = await service.handle("webchat", "user-0009", text="what are my options")
    with db.session() as s:
        rows = s.scalars(select(Message).where(Message.conversation_id == outcome.conversation_id)
                         .order_by(Message.id)).all()[2:]  # after the choice and its confirmation
    assert [(m.direction, m.sender) for m in rows][:2] == [("in", "user"), ("out", "bot")]
    assert rows[0].text == "what are my options" and rows[1].text == "echo:what are my options"


async def test_erasure_during_a_turn_leaves_nothing_behind(service, fake_rasa, db):
    def erase(body):
        erase_conversation(db, body["sender"])
        return [{"text": "deleted"}]

    await service.handle("webchat", "user-0010", text="hello")
    fake_rasa.answer = erase
    outcome = await service.handle("webchat", "user-0010", text="yes delete")
    assert outcome.replies[0].text == "deleted"
    with db.session() as s:
        assert s.get(Conversation, outcome.conversation_id) is None
        assert s.scalars(select(Message).where(Message.conversation_id == outcome.conversation_id)).all() == []


def test_the_same_message_delivered_concurrently_is_stored_once(service, db):
    from concurrent.futures import ThreadPoolExecutor

    from bot.conversation import Incoming

    incoming = Incoming("telegram", "4242", text="hello", message_id="m:77", sequence=77, address="4242")
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: service.accept(incoming), range(16)))
    assert sum(not r.duplicate for r in results) == 1
    assert len({r.message_id for r in results}) == 1
    with db.session() as s:
        assert len(s.scalars(select(Message).where(Message.channel_message_id == "m:77")).all()) == 1


async def test_messages_are_processed_in_platform_order_not_arrival_order(service, fake_rasa):
    from bot.conversation import Incoming

    for sequence in (3, 1, 2):
        service.accept(Incoming("telegram", "4243", text=f"s{sequence}", message_id=f"m:{sequence}",
                                sequence=sequence, address="4243"))
    cid = service.conversation_id("telegram", "4243")
    while await service.process_next(cid):
        pass
    assert [r["message"] for r in fake_rasa.received] == ["s1", "s2", "s3"]


def test_very_long_platform_ids_are_hashed_to_fit():
    from bot.conversation import CHANNEL_KEY_MAX, channel_key

    key = channel_key("x" * 500)
    assert len(key) <= CHANNEL_KEY_MAX and key == channel_key("x" * 500) and key != channel_key("y" * 500)


async def test_no_language_menu_after_a_safety_answer(service, fake_rasa, content):
    urgent = content.render("utter_handoff_urgent", "en").text
    fake_rasa.answer = lambda body: [{"text": "safety"}, {"text": urgent}]
    outcome = await service.handle("webchat", "user-0099", text="they will kill me if i go back")
    assert [r.text for r in outcome.replies] == ["safety", urgent]


def test_a_database_error_never_carries_message_text_or_addresses(db):
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError) as info:
        with db.session() as s:
            s.add(Message(conversation_id="no-such-conversation", direction="in", sender="user",
                          text="my secret story +491511234567"))
    assert "my secret story" not in str(info.value) and "+491511234567" not in str(info.value)


async def test_a_language_rasa_answered_in_is_recorded_as_chosen_without_asking_the_database(
        service, fake_rasa, content, db, monkeypatch):
    """Rasa renders answers itself (bot.rasa_nlg.ContentNLG) and each carries its language: a person who
    chose French gets the rest of the turn (the privacy notice) in French, and the gateway keeps French."""
    fake_rasa.answer = lambda body: [{"text": "Bonjour", "language": "fr"}]
    accepted = service.accept(Incoming("webchat", "user-0031", payload='/change_language{"language":"fr"}',
                                       kind="payload"))
    monkeypatch.setattr(service, "language_of", lambda cid: pytest.fail("the answer told the language"))
    assert (await service.process_next(accepted.conversation_id)).status == "done"
    notice = content.render("utter_privacy_notice", "fr", service.privacy_arguments())
    assert service.collect(accepted.conversation_id)[-1].text == notice.text
    with db.session() as s:
        conv = s.get(Conversation, fake_rasa.received[-1]["sender"])
        assert (conv.language, conv.language_source) == ("fr", "chosen")


async def test_an_answer_in_the_language_sent_changes_nothing(service, fake_rasa, db):
    fake_rasa.answer = lambda body: [{"text": "Hola", "language": body["metadata"]["language"]}]
    await service.handle("webchat", "user-0032", text="hola", language_hint="es")
    with db.session() as s:
        conv = s.get(Conversation, fake_rasa.received[-1]["sender"])
        assert (conv.language, conv.language_source) == ("es", "suggested")


async def test_an_unknown_language_in_an_answer_is_ignored(service, fake_rasa, db):
    fake_rasa.answer = lambda body: [{"text": "?", "language": "xx"}, {"text": "!", "language": 7}]
    await service.handle("webchat", "user-0033", text="hello", language_hint="en")
    with db.session() as s:
        assert s.get(Conversation, fake_rasa.received[-1]["sender"]).language == "en"

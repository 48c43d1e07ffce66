"""The production profile's parts that need no running services: replica fail-over, the analytics
event reduction, metrics, JSON logs, the profile's settings."""

import asyncio
import json
import logging

import httpx
import pytest

from bot import metrics
from bot.errors import RasaUnavailable
from bot.event_broker import reduce_event
from bot.logs import JsonFormatter
from bot.profiles import prod_environ, rasa_urls, store_environment
from bot.rasa_channel import is_unavailable
from bot.rasa_client import RasaClient
from bot.settings import Secret, load_settings
from bot.supervisor import json_line


class Replicas:
    """Fake Rasa replicas: `down` ones refuse connections, `broken` ones answer 503."""

    def __init__(self, down=(), broken=()):
        self.down, self.broken, self.calls = set(down), set(broken), []

    def handler(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        self.calls.append(host)
        if host in self.down:
            raise httpx.ConnectError("refused", request=request)
        if host in self.broken:
            return httpx.Response(503, json={"error": "OperationalError"})
        if request.url.path == "/status":
            return httpx.Response(200, json={"model_file": "m.tar.gz"})
        return httpx.Response(200, json=[{"text": f"from {host}"}])


def _client(replicas, hosts=("a", "b", "c")):
    return RasaClient([f"http://{h}:5005" for h in hosts], Secret("t"), transport=httpx.MockTransport(replicas.handler))


def test_messages_go_round_robin_over_the_replicas():
    replicas = Replicas()
    client = _client(replicas)
    answers = [asyncio.run(client.send("s", "hi"))[0]["text"] for _ in range(6)]
    assert sorted(answers) == ["from a", "from a", "from b", "from b", "from c", "from c"]


def test_a_dead_replica_costs_no_message_and_is_skipped():
    replicas = Replicas(down={"b"}, broken={"c"})
    client = _client(replicas)
    answers = [asyncio.run(client.send("s", "hi"))[0]["text"] for _ in range(6)]
    assert answers == ["from a"] * 6
    # b and c were tried once each, then skipped while marked down
    assert replicas.calls.count("b") == 1 and replicas.calls.count("c") == 1


def test_every_replica_down_is_unavailable():
    client = _client(Replicas(down={"a", "b"}), hosts=("a", "b"))
    with pytest.raises(RasaUnavailable):
        asyncio.run(client.send("s", "hi"))
    assert asyncio.run(client.ready()) is False


def test_ready_when_one_replica_has_a_model():
    client = _client(Replicas(down={"a"}), hosts=("a", "b"))
    assert asyncio.run(client.ready()) is True
    assert asyncio.run(client.replicas_ready()) == {"http://a:5005": False, "http://b:5005": True}


def test_a_comma_separated_setting_is_several_replicas():
    client = RasaClient("http://r1:5005, http://r2:5006/", Secret("t"))
    assert client.urls == ["http://r1:5005", "http://r2:5006"]


def test_store_errors_are_unavailable_and_others_are_not():
    class OperationalError(Exception):
        pass

    wrapped = RuntimeError("turn failed")
    wrapped.__cause__ = OperationalError("server closed the connection")
    assert is_unavailable(wrapped)
    assert is_unavailable(ConnectionRefusedError())
    assert not is_unavailable(KeyError("slot"))


def test_analytics_events_carry_no_text_entities_or_slot_values():
    key = b"k" * 32
    user = {"event": "user", "timestamp": 1.5, "sender_id": "abc123", "text": "my name is Amina, I am in Calais",
            "parse_data": {"intent": {"name": "ask_options", "confidence": 0.91234},
                           "entities": [{"value": "Calais"}], "text": "my name is Amina, I am in Calais"},
            "input_channel": "gateway", "metadata": {"language": "en"}}
    bot = {"event": "bot", "timestamp": 2.0, "sender_id": "abc123", "text": "Here are your options",
           "metadata": {"utter_action": "utter_options"}, "data": {"buttons": [{"title": "x"}]}}
    slot = {"event": "slot", "timestamp": 3.0, "sender_id": "abc123", "name": "nationality", "value": "af"}
    reduced = [reduce_event(e, key) for e in (user, bot, slot)]
    dumped = json.dumps(reduced)
    for secret in ("Amina", "Calais", "Here are your options", '"af"', "abc123"):
        assert secret not in dumped
    assert reduced[0]["intent"] == "ask_options" and reduced[0]["intent_confidence"] == 0.912
    assert reduced[1]["response"] == "utter_options"
    assert reduced[2]["name"] == "nationality" and "value" not in reduced[2]
    assert reduced[0]["conversation"] == reduced[2]["conversation"] != "abc123"


def test_metrics_render_in_prometheus_text_format():
    counter = metrics.Counter("t_messages_total", "Messages.")
    counter.inc(channel="telegram")
    counter.inc(2, channel="telegram")
    histogram = metrics.Histogram("t_seconds", "Latency.", buckets=(0.1, 1.0))
    for value in (0.05, 0.5, 5.0):
        histogram.observe(value, channel='we"b')
    lines = counter.render() + histogram.render()
    assert 't_messages_total{channel="telegram"} 3' in lines
    assert 't_seconds_bucket{channel="we\\"b",le="0.1"} 1' in lines
    assert 't_seconds_bucket{channel="we\\"b",le="1"} 2' in lines
    assert 't_seconds_bucket{channel="we\\"b",le="+Inf"} 3' in lines
    assert 't_seconds_count{channel="we\\"b"} 3' in lines
    assert 't_seconds_sum{channel="we\\"b"} 5.55' in lines


def test_json_log_lines_keep_the_type_of_an_error_but_not_its_message():
    try:
        raise ValueError("text of a person: Amina")
    except ValueError:
        import sys

        record = logging.LogRecord("bot.x", logging.ERROR, __file__, 1, "failed conversation=%s", ("c1",), sys.exc_info())
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "failed conversation=c1" and entry["level"] == "error"
    assert entry["error"] == "ValueError" and "Amina" not in json.dumps(entry)


def test_child_lines_become_json_with_the_process_name():
    assert json.loads(json_line("rasa-1", "2026 INFO started\n")) | {"ts": None} == {
        "ts": None, "message": "2026 INFO started", "process": "rasa-1"}
    assert json.loads(json_line("gateway", '{"level": "info", "message": "m"}\n')) == {
        "level": "info", "message": "m", "process": "gateway"}


def test_the_profile_fills_only_what_the_operator_did_not_set():
    merged = prod_environ({"DATABASE_URL": "postgresql://db.internal/cr"}, {"REDIS_URL": "redis://cache:6380/2"})
    assert merged["DATABASE_URL"] == "postgresql://db.internal/cr"
    assert "REDIS_URL" not in merged  # .env has it
    assert merged["TRACKER_STORE_URL"].startswith("postgresql://")
    settings = load_settings({**merged, "REDIS_URL": "redis://:pw@cache:6380/2", "RASA_TOKEN": "x" * 32,
                              "NLG_TOKEN": "y" * 32, "PSEUDONYM_KEY": "z" * 32, "DATA_KEYS": "w" * 32,
                              "EVENT_BROKER_URL": "amqp://u:p%40ss@mq:5673/"}, env_file=None)
    env = store_environment(settings)
    assert (env["REDIS_HOST"], env["REDIS_PORT"], env["REDIS_DB"], env["REDIS_PASSWORD"]) == ("cache", "6380", "2", "pw")
    assert (env["RABBITMQ_HOST"], env["RABBITMQ_PORT"], env["RABBITMQ_PASSWORD"]) == ("mq", "5673", "p@ss")
    assert env["RASA_TRACKER_DB"] == "crossroads_rasa"
    assert rasa_urls(3) == ["http://127.0.0.1:5005", "http://127.0.0.1:5006", "http://127.0.0.1:5007"]


def test_a_failing_tracker_store_is_an_error_not_a_fresh_conversation():
    from rasa.core.tracker_store import FailSafeTrackerStore, InMemoryTrackerStore
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.trackers import DialogueStateTracker

    from bot.rasa_patches import TrackerStoreUnavailable, apply

    class Broken(InMemoryTrackerStore):
        async def retrieve(self, sender_id):
            raise OSError("connection refused")

        async def save(self, tracker):
            raise OSError("server closed the connection unexpectedly")

    apply()
    store = FailSafeTrackerStore(Broken(Domain.empty()))
    with pytest.raises(TrackerStoreUnavailable) as read:
        asyncio.run(store.retrieve("s1"))
    with pytest.raises(TrackerStoreUnavailable):
        asyncio.run(store.save(DialogueStateTracker("s1", [])))
    assert is_unavailable(read.value)
    assert asyncio.run(store.fallback_tracker_store.retrieve("s1")) is None  # nothing went to memory


def test_action_server_answers_are_still_validated():
    from jsonschema import ValidationError
    from rasa.core.actions.action import RemoteAction

    from bot.rasa_patches import apply

    apply()
    action = RemoteAction("action_x", None)
    assert action._validate_action_result({"events": [], "responses": []}) is True
    with pytest.raises(ValidationError):
        action._validate_action_result({"events": "not a list", "responses": []})


def test_an_action_that_fails_fails_the_turn():
    """Rasa logs an action's exception and answers nothing; the gateway must see an error and retry."""
    from bot.rasa_patches import ActionFailed, _record_failures, failing_turns

    class Action:
        def __init__(self, error=None):
            self.error = error

        async def run(self, *args):
            if self.error:
                raise self.error
            return ["event"]

    _record_failures(Action)

    async def rasas_run_action(processor, action):  # what Rasa 3.6 does: log, drop the events, go on
        try:
            await action.run()
        except Exception:
            pass
        return False

    run_action = failing_turns(rasas_run_action)
    assert asyncio.run(run_action(None, Action())) is False  # a good action: unchanged
    with pytest.raises(ActionFailed) as failed:
        asyncio.run(run_action(None, Action(ConnectionRefusedError("action server down"))))
    assert is_unavailable(failed.value)  # the channel answers 503, the gateway retries
    with pytest.raises(ActionFailed) as bug:
        asyncio.run(run_action(None, Action(KeyError("slot"))))
    assert not is_unavailable(bug.value)  # 500: retried, then the person is told to rephrase


def test_the_failure_test_tells_lost_duplicated_and_reordered_apart():
    from bot.bench import compare_replies

    expected = [["a"], ["b", "n"], ["c"]]

    def counts(delivered, notices=()):
        result = compare_replies(expected, delivered, notices)
        return [result[k] for k in ("answered_once", "lost", "duplicated", "reordered", "delay_notices")]

    assert counts(["a", "b", "n", "c"]) == [3, 0, 0, 0, 0]
    assert counts(["a", "late", "b", "n", "c"], notices=["late"]) == [3, 0, 0, 0, 1]
    assert counts(["a", "b", "n", "b", "n", "c"]) == [2, 0, 2, 0, 0]
    assert counts(["a", "c", "b", "n"]) == [1, 0, 0, 1, 0]
    assert counts(["a", "b", "c"]) == [2, 1, 0, 0, 0]


def test_the_profile_gives_the_action_server_its_workers_and_each_replica_one():
    from pathlib import Path

    from rasa_sdk.constants import ENV_SANIC_WORKERS

    from bot.supervisor import prod_commands

    settings = load_settings({"RASA_TOKEN": "x" * 32, "NLG_TOKEN": "y" * 32, "PSEUDONYM_KEY": "z" * 32,
                              "DATA_KEYS": "w" * 32, "RASA_REPLICAS": "3", "ACTION_WORKERS": "4",
                              "RASA_BASE_PORT": "6100"}, env_file=None)
    processes = {p.name: p for p in prod_commands(settings, Path("m.tar.gz"))}
    assert processes["actions"].env == {ENV_SANIC_WORKERS: "4"}
    assert [n for n in processes if n.startswith("rasa-")] == ["rasa-1", "rasa-2", "rasa-3"]
    assert processes["rasa-3"].command[processes["rasa-3"].command.index("--port") + 1] == "6102"
    assert "endpoints.prod.yml" in processes["rasa-1"].command

"""`make bench`: this assistant's production profile against a stock `rasa init` assistant, in one run.

1. Stock Rasa: `rasa init --no-prompt` in reports/bench/work/stock (made and trained once, not committed),
   served by one `rasa run` process with its defaults (in-memory tracker and lock stores).
2. This assistant: `python -m bot run --profile prod` on fresh PostgreSQL databases, with Redis, RabbitMQ,
   RASA_REPLICAS Rasa replicas and the fake Telegram Bot API (tests/fakes/platforms.py).
3. The same load through each one's REST channel (stock: /webhooks/rest/webhook; ours: the web chat
   API, which answers in the same request): 1, 10 and 50 concurrent conversations, each sending the
   same English messages one after the other (a conversation waits for its answer).
4. Long conversations: 210 turns, latency at turn 10 and at turn 200.
5. Telegram end to end: updates posted to /telegram/webhook, latency until the fake Bot API receives
   the first reply.
6. The load-and-failure test (`--only failure` runs just this): 50 conversations × 40 messages through
   the Telegram webhook while one Rasa replica is killed (the supervisor restarts it) and PostgreSQL
   is restarted; every conversation's replies are compared with a reference conversation's.

Writes reports/bench/summary.json, summary.md and bench.png. Ratios, not absolute times, are the result:
both assistants run on the same machine in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import httpx

from bot.settings import ROOT

REPORT_DIR = ROOT / "reports" / "bench"
WORK = REPORT_DIR / "work"
LEVELS = (1, 10, 50)
MESSAGES_PER_LEVEL = {1: 60, 10: 300, 50: 600}
TELEGRAM_MESSAGES_PER_LEVEL = {1: 30, 10: 200, 50: 400}
# The same messages go to both assistants (stock Rasa's mood bot answers anything with something).
MESSAGES = ["hello", "what are my options?", "are you a bot?", "I need a lawyer", "thank you",
            "how does voluntary return work?", "can I change my mind later?", "what are my rights?",
            "I am sad", "great, thanks"]
# The failure test's script: questions whose answers do not depend on earlier turns, so every
# conversation must get the reference conversation's replies, in the same order.
FAILURE_SCRIPT = ["hello", "what are my options?", "I need a lawyer", "what are my rights?",
                  "how does voluntary return work?", "can I change my mind later?", "are you a bot?",
                  "I have no passport", "thank you", "what about my children?"]
TARGETS = {"throughput": 1.5, "p95_at_10": 1.5, "turn200_over_turn10": 1.3}
OURS_PORTS = {"gateway": 8100, "rasa": 5205, "actions": 5255}
STOCK_PORT = 5105
BENCH_DATABASES = ("crossroads_bench", "crossroads_bench_rasa")
BOT_TOKEN = "123456:bench-token"


def say(text: str) -> None:
    print(f"bench: {text}", flush=True)


# -- processes ----------------------------------------------------------------------------------------
class Service:
    def __init__(self, name: str, command: List[str], cwd: Path, env: Dict[str, str]) -> None:
        self.name, self.command, self.cwd, self.env = name, command, cwd, env
        self.log = WORK / f"{name}.log"
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> "Service":
        WORK.mkdir(parents=True, exist_ok=True)
        handle = self.log.open("w", encoding="utf-8")
        self.proc = subprocess.Popen(self.command, cwd=self.cwd, env=self.env, stdout=handle, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def wait_until(check: Callable[[], bool], timeout: float, what: str, service: Optional[Service] = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service is not None and service.proc is not None and service.proc.poll() is not None:
            raise RuntimeError(f"{what}: {service.name} exited ({service.proc.returncode}); its log:\n{service.tail()}")
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(1.0)
    raise RuntimeError(f"{what}: not ready after {timeout:.0f} s" + (f"; log:\n{service.tail()}" if service else ""))


def _http_ok(url: str, **kwargs: Any) -> bool:
    return httpx.get(url, timeout=3, **kwargs).status_code == 200


# -- CPU and memory of process trees (from /proc) ------------------------------------------------------
def _children() -> Dict[int, List[int]]:
    tree: Dict[int, List[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def tree_pids(root: int) -> List[int]:
    tree, result, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        result.append(pid)
        todo += tree.get(pid, [])
    return result


def named_pids(names: Sequence[str]) -> List[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                comm = (entry / "comm").read_text().strip()
            except OSError:
                continue
            if any(comm.startswith(n) for n in names):
                found.append(int(entry.name))
    return found


def cpu_rss(pids: Sequence[int]) -> Tuple[float, float]:
    """(CPU seconds used so far, resident memory in MB) summed over `pids`."""
    tick = os.sysconf("SC_CLK_TCK")
    cpu = rss = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / tick
            rss += int(fields[21]) * os.sysconf("SC_PAGE_SIZE") / 1e6
        except (OSError, IndexError, ValueError):
            continue
    return cpu, rss


class Usage:
    """CPU seconds and peak memory of a set of process trees during one measurement."""

    def __init__(self, roots: Callable[[], List[int]]) -> None:
        self.roots = roots
        self.peak_rss = 0.0
        self._task: Optional[asyncio.Task] = None

    def _pids(self) -> List[int]:
        return [p for root in self.roots() for p in tree_pids(root)]

    async def __aenter__(self) -> "Usage":
        self.cpu_start, _ = cpu_rss(self._pids())
        self.started = time.monotonic()
        self._task = asyncio.create_task(self._sample())
        return self

    async def _sample(self) -> None:
        while True:
            self.peak_rss = max(self.peak_rss, cpu_rss(self._pids())[1])
            await asyncio.sleep(0.5)

    async def __aexit__(self, *exc: Any) -> None:
        if self._task:
            self._task.cancel()
        cpu_end, rss = cpu_rss(self._pids())
        self.peak_rss = max(self.peak_rss, rss)
        self.cpu_seconds = cpu_end - self.cpu_start
        self.wall = time.monotonic() - self.started


# -- load --------------------------------------------------------------------------------------------
@dataclass
class Result:
    latencies: List[float] = field(default_factory=list)
    errors: int = 0  # no HTTP 200 (or no reply at all, through Telegram)
    empty: int = 0  # HTTP 200 without any reply
    wall: float = 0.0

    def summary(self) -> Dict[str, Any]:
        lat = sorted(self.latencies)

        def pct(p: float) -> Optional[float]:
            if not lat:
                return None
            return round(lat[min(len(lat) - 1, int(round(p / 100 * (len(lat) - 1))))] * 1000, 1)

        return {"messages": len(lat), "errors": self.errors, "empty_answers": self.empty, "p50_ms": pct(50), "p95_ms": pct(95), "p99_ms": pct(99),
                "throughput_per_s": round(len(lat) / self.wall, 2) if self.wall else None}


async def drive(send: Callable[[httpx.AsyncClient, str, str, int], Any], conversations: int, total: int,
                prefix: str) -> Result:
    """`send` returns None for an error, else whether the answer held at least one reply."""
    """`conversations` at once, each sending its share of `total` messages one after the other."""
    result = Result()
    per = max(1, total // conversations)
    limits = httpx.Limits(max_connections=conversations + 5, max_keepalive_connections=conversations + 5)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        async def conversation(index: int) -> None:
            sender = f"{prefix}{index:04d}{secrets.token_hex(3)}"
            for turn in range(per):
                started = time.perf_counter()
                try:
                    answered = await send(client, sender, MESSAGES[(index + turn) % len(MESSAGES)], turn)
                except httpx.HTTPError:
                    answered = None
                if answered is None:
                    result.errors += 1
                    continue
                result.latencies.append(time.perf_counter() - started)
                if not answered:
                    result.empty += 1

        started = time.monotonic()
        await asyncio.gather(*(conversation(i) for i in range(conversations)))
        result.wall = time.monotonic() - started
    return result


def stock_sender(port: int):
    async def send(client: httpx.AsyncClient, sender: str, text: str, turn: int) -> bool:
        response = await client.post(f"http://127.0.0.1:{port}/webhooks/rest/webhook",
                                     json={"sender": sender, "message": text})
        if response.status_code != 200:
            return None
        return bool(response.json())
    return send


def ours_sender(port: int):
    async def send(client: httpx.AsyncClient, sender: str, text: str, turn: int) -> bool:
        response = await client.post(f"http://127.0.0.1:{port}/webchat/api/message",
                                     json={"user_id": sender, "text": text, "message_id": f"{sender}-{turn}"})
        if response.status_code != 200:
            return None
        return bool(response.json().get("replies"))
    return send


async def long_conversations(send, prefix: str, turns: int = 210, conversations: int = 3) -> Dict[str, Any]:
    """Latency by turn number of `conversations` long conversations run side by side."""
    by_turn: Dict[int, List[float]] = {}
    async with httpx.AsyncClient(timeout=60) as client:
        async def conversation(index: int) -> None:
            sender = f"{prefix}{index:02d}{secrets.token_hex(3)}"
            for turn in range(1, turns + 1):
                started = time.perf_counter()
                answered = await send(client, sender, MESSAGES[turn % len(MESSAGES)], turn)
                if answered is not None:
                    by_turn.setdefault(turn, []).append(time.perf_counter() - started)

        await asyncio.gather(*(conversation(i) for i in range(conversations)))

    def around(turn: int) -> Optional[float]:
        values = [v for t in range(turn - 5, turn + 6) for v in by_turn.get(t, [])]
        return round(statistics.median(values) * 1000, 1) if values else None

    t10, t200 = around(10), around(200)
    curve = [[t, round(statistics.median(v) * 1000, 1)] for t, v in sorted(by_turn.items())]
    return {"turn10_ms": t10, "turn200_ms": t200, "ratio": round(t200 / t10, 3) if t10 and t200 else None,
            "conversations": conversations, "turns": turns, "curve": curve}


# -- Telegram through the fake Bot API -----------------------------------------------------------------
class TelegramDriver:
    def __init__(self, platforms, gateway_port: int, secret: str) -> None:
        self.platforms, self.secret = platforms, secret
        self.url = f"http://127.0.0.1:{gateway_port}/telegram/webhook"
        self._update = int(time.time()) * 10

    def next_update(self) -> int:
        self._update += 1
        return self._update

    def replies(self, chat_id: int) -> List[Tuple[float, str]]:
        return [(c.at, c.body.get("text") or "") for c in self.platforms.sent("telegram", "sendMessage")
                if str(c.body.get("chat_id")) == str(chat_id)]

    async def post(self, client: httpx.AsyncClient, chat_id: int, text: str) -> None:
        from tests.fakes.platforms import telegram_text

        update = self.next_update()
        body = telegram_text(update, chat_id, text)
        for attempt in range(200):  # like Telegram: a webhook that fails is delivered again
            try:
                response = await client.post(self.url, json=body,
                                             headers={"X-Telegram-Bot-Api-Secret-Token": self.secret})
                if response.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(min(0.5 * (attempt + 1), 3))
        raise RuntimeError("the webhook refused an update 200 times")

    async def wait_reply(self, chat_id: int, after: int, timeout: float) -> Optional[float]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.replies(chat_id)
            if len(got) > after:
                return got[after][0]
            await asyncio.sleep(0.01)
        return None

    async def quiet(self, chat_ids: Sequence[int], seconds: float, timeout: float) -> None:
        """Wait until no reply arrived for `seconds` (at most `timeout`)."""
        deadline = time.monotonic() + timeout
        last = -1
        stable_since = time.monotonic()
        while time.monotonic() < deadline:
            count = sum(len(self.replies(c)) for c in chat_ids)
            if count != last:
                last, stable_since = count, time.monotonic()
            elif time.monotonic() - stable_since >= seconds:
                return
            await asyncio.sleep(0.2)

    async def load(self, conversations: int, total: int, base_chat: int) -> Result:
        result = Result()
        per = max(1, total // conversations)
        async with httpx.AsyncClient(timeout=30) as client:
            async def conversation(index: int) -> None:
                chat = base_chat + index
                for turn in range(per):
                    seen = len(self.replies(chat))
                    started = time.monotonic()
                    await self.post(client, chat, MESSAGES[(index + turn) % len(MESSAGES)])
                    arrived = await self.wait_reply(chat, seen, 60)
                    if arrived is None:
                        result.errors += 1
                    else:
                        result.latencies.append(arrived - started)
                    await self.quiet([chat], 0.3, 10)  # the rest of this answer (notice, menu) before the next

            started = time.monotonic()
            await asyncio.gather(*(conversation(i) for i in range(conversations)))
            result.wall = time.monotonic() - started
        return result


def compare_replies(expected: List[List[str]], delivered: List[str], notices: Sequence[str] = ()) -> Dict[str, Any]:
    """Compare one conversation's delivered replies with the reference's replies per message.

    `notices` are messages the service sends on purpose when answers are late ("Sorry, my answers are
    delayed…", once while Rasa is unavailable): counted apart, not as duplicates."""
    notice_count = sum(1 for text in delivered if text in notices)
    delivered = [text for text in delivered if text not in notices]
    flat = [(i, text) for i, texts in enumerate(expected) for text in texts]
    matcher = difflib.SequenceMatcher(None, [t for _, t in flat], delivered, autojunk=False)
    missing: Dict[str, int] = {}
    extra: Dict[str, int] = {}
    bad_messages = set()
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        bad_messages.update(flat[k][0] for k in range(i1, i2))
        if j2 > j1 and flat:  # something delivered here that the reference does not have: blame the message before
            bad_messages.add(flat[max(i1 - 1, 0)][0])
        for k in range(i1, i2):
            missing[flat[k][1]] = missing.get(flat[k][1], 0) + 1
        for text in delivered[j1:j2]:
            extra[text] = extra.get(text, 0) + 1
    # A reply missing in one place and delivered in another arrived out of order.
    reordered = sum(min(n, extra.get(text, 0)) for text, n in missing.items())
    lost = sum(missing.values()) - reordered
    duplicated = sum(extra.values()) - reordered
    differences = [{"op": op, "expected": [t[:60] for _, t in flat[i1:i2]], "delivered": [t[:60] for t in delivered[j1:j2]],
                    "messages": sorted({flat[k][0] for k in range(i1, i2)})}
                   for op, i1, i2, j1, j2 in matcher.get_opcodes() if op != "equal"]
    return {"messages": len(expected), "answered_once": len(expected) - len(bad_messages), "lost": lost,
            "duplicated": duplicated, "reordered": reordered, "delay_notices": notice_count,
            "differences": differences[:6]}


async def failure_test(driver: TelegramDriver, kill_replica: Callable[[], str], restart_postgres: Callable[[], float],
                       conversations: int = 50, messages: int = 40, base_chat: int = 7_000_000) -> Dict[str, Any]:
    script = [FAILURE_SCRIPT[i % len(FAILURE_SCRIPT)] for i in range(messages)]
    # The reference: one conversation, each message answered before the next, nothing failing.
    reference_chat = base_chat - 1
    expected: List[List[str]] = []
    async with httpx.AsyncClient(timeout=30) as client:
        for text in script:
            seen = len(driver.replies(reference_chat))
            await driver.post(client, reference_chat, text)
            await driver.wait_reply(reference_chat, seen, 60)
            await driver.quiet([reference_chat], 1.0, 20)
            expected.append([t for _, t in driver.replies(reference_chat)[seen:]])
    say(f"failure test: reference conversation answered {len(expected)} messages with "
        f"{sum(map(len, expected))} replies")

    events: List[Dict[str, Any]] = []
    sent = [0]
    total = conversations * messages
    started = time.monotonic()

    async def chaos() -> None:
        while sent[0] < total * 0.25:
            await asyncio.sleep(0.2)
        events.append({"at_s": round(time.monotonic() - started, 1), "event": kill_replica(),
                       "messages_sent": sent[0]})
        while sent[0] < total * 0.6:
            await asyncio.sleep(0.2)
        seconds = await asyncio.to_thread(restart_postgres)
        events.append({"at_s": round(time.monotonic() - started, 1), "event": f"PostgreSQL restarted ({seconds:.1f} s)",
                       "messages_sent": sent[0]})

    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=conversations + 5)) as client:
        async def conversation(index: int) -> None:
            chat = base_chat + index
            await asyncio.sleep(index * 0.02)
            for text in script:
                seen = len(driver.replies(chat))
                await driver.post(client, chat, text)
                sent[0] += 1
                # People do not wait for ever: the next message goes after the first reply or 2 s.
                await driver.wait_reply(chat, seen, 2.0)

        chaos_task = asyncio.create_task(chaos())
        await asyncio.gather(*(conversation(i) for i in range(conversations)))
        say(f"failure test: {total} messages posted in {time.monotonic() - started:.0f} s; waiting for the last replies")
        expected_total = conversations * sum(map(len, expected))
        chats = [base_chat + i for i in range(conversations)]
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and sum(len(driver.replies(c)) for c in chats) < expected_total:
            await asyncio.sleep(0.5)
        await driver.quiet(chats, 10.0, 60)  # and anything extra (a duplicate) would have arrived by now
        await chaos_task

    from bot.content import ContentStore

    notices = [ContentStore(ROOT / "data" / "content").render("utter_answer_delayed", "en").text]
    totals = {"messages": 0, "answered_once": 0, "lost": 0, "duplicated": 0, "reordered": 0, "delay_notices": 0}
    worst = []
    for i in range(conversations):
        outcome = compare_replies(expected, [t for _, t in driver.replies(base_chat + i)], notices)
        for key in totals:
            totals[key] += outcome[key]
        if outcome["differences"]:
            worst.append({"conversation": i, **outcome})
    return {**totals, "conversations": conversations, "messages_per_conversation": messages,
            "replies_expected": conversations * sum(map(len, expected)),
            "replies_delivered": sum(len(driver.replies(base_chat + i)) for i in range(conversations)),
            "duration_s": round(time.monotonic() - started, 1), "events": events, "conversations_with_problems": worst[:10]}


# -- set-up of both assistants -------------------------------------------------------------------------
def rasa_bin() -> str:
    return str(Path(sys.executable).parent / "rasa")


def prepare_stock() -> Path:
    project = WORK / "stock"
    if project.exists() and list((project / "models").glob("*.tar.gz")):
        return project
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    say("stock: rasa init --no-prompt (creates and trains Rasa's example assistant; a few minutes, once)")
    started = time.monotonic()
    subprocess.run([rasa_bin(), "init", "--no-prompt", "--init-dir", str(project)], cwd=project, check=True,
                   stdout=(WORK / "stock-init.log").open("w"), stderr=subprocess.STDOUT,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if not list((project / "models").glob("*.tar.gz")):
        raise RuntimeError(f"rasa init made no model; see {WORK / 'stock-init.log'}")
    say(f"stock: ready in {time.monotonic() - started:.0f} s")
    return project


def reset_databases(admin_url: str = "postgresql://postgres@127.0.0.1:5432/postgres") -> None:
    import psycopg2

    connection = psycopg2.connect(admin_url)
    connection.autocommit = True
    with connection.cursor() as cursor:
        for name in BENCH_DATABASES:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
            cursor.execute(f'CREATE DATABASE "{name}"')
    connection.close()


def ours_environment(fake_url: str, secret: str) -> Dict[str, str]:
    return {**os.environ,
            "DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{BENCH_DATABASES[0]}",
            "TRACKER_STORE_URL": f"postgresql://postgres@127.0.0.1:5432/{BENCH_DATABASES[1]}",
            "GATEWAY_PORT": str(OURS_PORTS["gateway"]), "RASA_BASE_PORT": str(OURS_PORTS["rasa"]),
            "ACTIONS_PORT": str(OURS_PORTS["actions"]),
            # The bench sends far faster than a person may (USER_MESSAGES_PER_MINUTE protects the service).
            "USER_MESSAGES_PER_MINUTE": "100000",
            "TELEGRAM_BOT_TOKEN": BOT_TOKEN, "TELEGRAM_API_BASE_URL": fake_url,
            "TELEGRAM_WEBHOOK_URL": "https://bench.invalid/telegram/webhook", "TELEGRAM_WEBHOOK_SECRET": secret,
            "PYTHONUNBUFFERED": "1"}


def find_replica_pid(port: int) -> Optional[int]:
    for pid in named_pids(["rasa", "python"]):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [w.decode(errors="replace") for w in cmd]
        if "run" in words and "--port" in words and words[words.index("--port") + 1] == str(port) \
                and "actions" not in words:
            return pid
    return None


def restart_postgres() -> float:
    started = time.monotonic()
    versions = sorted(p.name for p in Path("/etc/postgresql").iterdir()) if Path("/etc/postgresql").exists() else []
    if not versions:
        raise RuntimeError("no PostgreSQL cluster found under /etc/postgresql to restart")
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "restart"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    return time.monotonic() - started


def machine() -> Dict[str, Any]:
    return {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}


# -- report --------------------------------------------------------------------------------------------
def write_report(summary: Dict[str, Any]) -> None:
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    (REPORT_DIR / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    lines = ["# Benchmark (`make bench`)", "", f"Run {summary['started']} on {summary['machine']['cores']} cores. "
             "Ratios compare the two assistants in the same run; absolute times depend on the machine.", ""]
    if summary.get("rest"):
        lines += ["## REST channel, same load", "",
                  "| assistant | conversations | messages | p50 ms | p95 ms | p99 ms | msg/s | errors | empty answers | CPU s | peak MB |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for who in ("stock", "ours"):
            for level, r in summary["rest"][who].items():
                lines.append(f"| {who} | {level} | {r['messages']} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | "
                             f"{r['throughput_per_s']} | {r['errors']} | {r['empty_answers']} | {r.get('cpu_s')} | {r.get('peak_rss_mb')} |")
        lines.append("")
    if summary.get("turns"):
        lines += ["## Long conversations (median latency around the turn)", "", "| assistant | turn 10 ms | turn 200 ms | ratio |",
                  "|---|---|---|---|"]
        for who, t in summary["turns"].items():
            lines.append(f"| {who} | {t['turn10_ms']} | {t['turn200_ms']} | {t['ratio']} |")
        lines.append("")
    if summary.get("telegram"):
        lines += ["## Telegram webhook to the fake Bot API's first reply (this assistant)", "",
                  "| conversations | messages | p50 ms | p95 ms | p99 ms | msg/s | errors |", "|---|---|---|---|---|---|---|"]
        for level, r in summary["telegram"].items():
            lines.append(f"| {level} | {r['messages']} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | "
                         f"{r['throughput_per_s']} | {r['errors']} |")
        lines.append("")
    if summary.get("ratios"):
        lines += ["## Ratios and targets", "", "| ratio | value | target | met |", "|---|---|---|---|"]
        for key, value in summary["ratios"].items():
            target = TARGETS[key]
            op = "≥" if key == "throughput" else "≤"
            lines.append(f"| {key} | {value} | {op} {target} | {'yes' if summary['met'][key] else 'NO'} |")
        lines.append("")
    if summary.get("failure_test"):
        f = summary["failure_test"]
        lines += ["## Load and failure test", "",
                  f"{f['conversations']} conversations × {f['messages_per_conversation']} messages through the Telegram "
                  f"webhook in {f['duration_s']} s: answered once {f['answered_once']} of {f['messages']}, lost "
                  f"{f['lost']}, duplicated {f['duplicated']}, reordered {f['reordered']}; {f.get('delay_notices', 0)} "
                  f"\"answers are delayed\" notices, sent on purpose while Rasa was unavailable (replies expected "
                  f"{f['replies_expected']}, delivered {f['replies_delivered']}).", ""]
        lines += [f"- {e['at_s']} s: {e['event']} (after {e['messages_sent']} messages)" for e in f["events"]]
        lines.append("")
    (REPORT_DIR / "summary.md").write_text("\n".join(lines), encoding="utf-8")
    plot(summary)


def plot(summary: Dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [k for k in ("rest", "turns", "telegram") if summary.get(k)]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels) + (1 if summary.get("rest") else 0), figsize=(5 * (len(panels) + 1), 4))
    axes = list(axes) if hasattr(axes, "__len__") else [axes]
    ax_iter = iter(axes)
    if summary.get("rest"):
        ax = next(ax_iter)
        for who, style in (("stock", "o--"), ("ours", "o-")):
            data = summary["rest"][who]
            ax.plot([int(k) for k in data], [v["p95_ms"] for v in data.values()], style, label=f"{who} p95")
            ax.plot([int(k) for k in data], [v["p50_ms"] for v in data.values()], style, alpha=0.4, label=f"{who} p50")
        ax.set_xlabel("concurrent conversations"), ax.set_ylabel("latency (ms)"), ax.set_title("REST latency")
        ax.set_xscale("log"), ax.legend()
        ax = next(ax_iter)
        levels = list(summary["rest"]["stock"])
        x = range(len(levels))
        ax.bar([i - 0.2 for i in x], [summary["rest"]["stock"][k]["throughput_per_s"] for k in levels], 0.4, label="stock")
        ax.bar([i + 0.2 for i in x], [summary["rest"]["ours"][k]["throughput_per_s"] for k in levels], 0.4, label="ours")
        ax.set_xticks(list(x)), ax.set_xticklabels(levels), ax.set_xlabel("concurrent conversations")
        ax.set_ylabel("messages / s"), ax.set_title("Throughput"), ax.legend()
    if summary.get("turns"):
        ax = next(ax_iter)
        for who, t in summary["turns"].items():
            ax.plot([p[0] for p in t["curve"]], [p[1] for p in t["curve"]], label=who, linewidth=0.8)
        ax.set_xlabel("turn"), ax.set_ylabel("median latency (ms)"), ax.set_title("Latency by turn"), ax.legend()
    if summary.get("telegram"):
        ax = next(ax_iter)
        data = summary["telegram"]
        for key in ("p50_ms", "p95_ms", "p99_ms"):
            ax.plot([int(k) for k in data], [v[key] for v in data.values()], "o-", label=key)
        ax.set_xscale("log"), ax.set_xlabel("concurrent conversations"), ax.set_ylabel("ms")
        ax.set_title("Telegram end to end"), ax.legend()
    fig.tight_layout()
    fig.savefig(REPORT_DIR / "bench.png", dpi=110)
    plt.close(fig)


# -- the run -------------------------------------------------------------------------------------------
async def _run(only: Optional[str]) -> Dict[str, Any]:
    from bot.training import train
    from tests.fakes.platforms import FakePlatforms

    summary: Dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(),
                               "targets": TARGETS, "method": __doc__.split("\n\n", 1)[1].strip()}
    previous = REPORT_DIR / "summary.json"
    if only == "failure" and previous.exists():  # keep the rest of the last full run
        old = json.loads(previous.read_text(encoding="utf-8"))
        summary.update({k: v for k, v in old.items() if k in ("rest", "turns", "telegram", "ratios", "met")})
    model = train()
    stock_project = prepare_stock() if only != "failure" else None
    say("resetting the bench databases")
    reset_databases()
    platforms = FakePlatforms().start()
    secret = secrets.token_urlsafe(24)
    ours = Service("ours", [sys.executable, "-m", "bot", "run", "--profile", "prod", "--no-train"], ROOT,
                   ours_environment(platforms.url, secret))
    stock = None
    try:
        say(f"starting this assistant's production profile (model {model.name})")
        ours.start()
        if stock_project is not None:
            stock = Service("stock", [rasa_bin(), "run", "--enable-api", "--port", str(STOCK_PORT)], stock_project,
                            {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}).start()
        gateway = f"http://127.0.0.1:{OURS_PORTS['gateway']}"
        wait_until(lambda: _http_ok(f"{gateway}/ready"), 300, "this assistant", ours)
        say("this assistant is ready")
        driver = TelegramDriver(platforms, OURS_PORTS["gateway"], secret)
        if stock is not None:
            wait_until(lambda: _http_ok(f"http://127.0.0.1:{STOCK_PORT}/status"), 300, "stock Rasa", stock)
            say("stock Rasa is ready")
            ours_roots = lambda: [ours.proc.pid]  # noqa: E731
            services_roots = lambda: named_pids(["postgres", "redis-server", "beam.smp"])  # noqa: E731
            stock_roots = lambda: [stock.proc.pid]  # noqa: E731
            send_stock, send_ours = stock_sender(STOCK_PORT), ours_sender(OURS_PORTS["gateway"])
            # Warm both up (first requests load lazily), then measure.
            await drive(send_stock, 5, 25, "warm-s")
            await drive(send_ours, 5, 25, "warm-o")
            rest: Dict[str, Dict[str, Any]] = {"stock": {}, "ours": {}}
            for level in LEVELS:
                for who, send, roots in (("stock", send_stock, stock_roots), ("ours", send_ours, ours_roots)):
                    async with Usage(roots) as usage, Usage(services_roots) as services:
                        result = await drive(send, level, MESSAGES_PER_LEVEL[level], f"{who}-{level}-")
                    rest[who][str(level)] = {**result.summary(), "cpu_s": round(usage.cpu_seconds, 1),
                                             "peak_rss_mb": round(usage.peak_rss),
                                             "services_cpu_s": round(services.cpu_seconds, 1)}
                    say(f"REST {who} at {level}: {rest[who][str(level)]}")
            summary["rest"] = rest
            summary["turns"] = {}
            for who, send in (("stock", send_stock), ("ours", send_ours)):
                summary["turns"][who] = await long_conversations(send, f"long-{who}-")
                say(f"long conversations {who}: turn 10 {summary['turns'][who]['turn10_ms']} ms, turn 200 "
                    f"{summary['turns'][who]['turn200_ms']} ms")
            stock.stop()
            stock = None
            telegram = {}
            for index, level in enumerate(LEVELS):
                result = await driver.load(level, TELEGRAM_MESSAGES_PER_LEVEL[level], 5_000_000 + index * 10_000)
                telegram[str(level)] = result.summary()
                say(f"Telegram at {level}: {telegram[str(level)]}")
            summary["telegram"] = telegram
            ratios = {
                "throughput": round(rest["ours"]["50"]["throughput_per_s"] / rest["stock"]["50"]["throughput_per_s"], 3),
                "p95_at_10": round(rest["ours"]["10"]["p95_ms"] / rest["stock"]["10"]["p95_ms"], 3),
                "turn200_over_turn10": summary["turns"]["ours"]["ratio"],
            }
            summary["ratios"] = ratios
            summary["met"] = {"throughput": ratios["throughput"] >= TARGETS["throughput"],
                              "p95_at_10": ratios["p95_at_10"] <= TARGETS["p95_at_10"],
                              "turn200_over_turn10": (ratios["turn200_over_turn10"] or 99) <= TARGETS["turn200_over_turn10"]}
            write_report(summary)

        def kill_replica() -> str:
            pid = find_replica_pid(OURS_PORTS["rasa"])
            if pid is None:
                return "no Rasa replica found to kill"
            os.kill(pid, signal.SIGKILL)
            return f"Rasa replica on port {OURS_PORTS['rasa']} killed (SIGKILL); the supervisor restarts it"

        summary["failure_test"] = await failure_test(driver, kill_replica, restart_postgres)
        say(f"failure test: {json.dumps({k: v for k, v in summary['failure_test'].items() if k != 'conversations_with_problems'})}")
        write_report(summary)
        return summary
    finally:
        if stock is not None:
            stock.stop()
        ours.stop()
        platforms.stop()


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["failure"], help="run only the load-and-failure test")
    args = parser.parse_args(argv)
    summary = asyncio.run(_run(args.only))
    failure = summary.get("failure_test") or {}
    ok = all(summary.get("met", {}).values()) and not (failure.get("lost") or failure.get("duplicated")
                                                        or failure.get("reordered"))
    say(f"report: {REPORT_DIR / 'summary.md'}, {REPORT_DIR / 'summary.json'}, {REPORT_DIR / 'bench.png'}")
    say("targets met" if ok else "TARGETS NOT MET (see the report)")
    return 0 if ok else 1

"""Prometheus metrics of the gateway, in the text exposition format (GET /metrics).

Counters and histograms are kept per gateway process (Prometheus scrapes each pod); queue lengths and
waiting times are read from the database at scrape time, so every replica reports the same queues.
No label ever carries a person's id, address, language choice of one person or message text.
"""

from __future__ import annotations

import bisect
import threading
from typing import Dict, Iterable, List, Sequence, Tuple

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
WAIT_BUCKETS = (30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400)

Labels = Tuple[Tuple[str, str], ...]


def _labels(labels: Labels, extra: Sequence[Tuple[str, str]] = ()) -> str:
    items = list(labels) + list(extra)
    if not items:
        return ""
    escaped = (f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34)).replace(chr(10), " ")}"'
               for k, v in items)
    return "{" + ",".join(escaped) + "}"


def _number(value: float) -> str:
    return repr(float(value)) if value != int(value) or abs(value) >= 1e15 else str(int(value))


class Counter:
    def __init__(self, name: str, help: str) -> None:
        self.name, self.help = name, help
        self._values: Dict[Labels, float] = {}
        self._lock = threading.Lock()

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> List[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        with self._lock:
            lines += [f"{self.name}{_labels(k)} {_number(v)}" for k, v in sorted(self._values.items())]
        return lines


class Histogram:
    def __init__(self, name: str, help: str, buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.name, self.help, self.buckets = name, help, tuple(sorted(buckets))
        self._data: Dict[Labels, Tuple[List[int], float, int]] = {}
        self._lock = threading.Lock()

    def observe(self, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            counts, total, n = self._data.get(key) or ([0] * len(self.buckets), 0.0, 0)
            index = bisect.bisect_left(self.buckets, value)
            if index < len(counts):
                counts[index] += 1
            self._data[key] = (counts, total + value, n + 1)

    def count(self, **labels: str) -> int:
        data = self._data.get(tuple(sorted(labels.items())))
        return data[2] if data else 0

    def render(self) -> List[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        with self._lock:
            for key, (counts, total, n) in sorted(self._data.items()):
                running = 0
                for bound, count in zip(self.buckets, counts):
                    running += count
                    lines.append(f"{self.name}_bucket{_labels(key, [('le', _number(bound))])} {running}")
                lines.append(f"{self.name}_bucket{_labels(key, [('le', '+Inf')])} {n}")
                lines.append(f"{self.name}_sum{_labels(key)} {_number(round(total, 6))}")
                lines.append(f"{self.name}_count{_labels(key)} {n}")
        return lines


def gauge_lines(name: str, help: str, values: Iterable[Tuple[Dict[str, str], float]]) -> List[str]:
    lines = [f"# HELP {name} {help}", f"# TYPE {name} gauge"]
    lines += [f"{name}{_labels(tuple(sorted(labels.items())))} {_number(value)}" for labels, value in values]
    return lines


MESSAGES_RECEIVED = Counter("crossroads_messages_received_total", "Messages accepted from people, by channel.")
MESSAGES_DUPLICATE = Counter("crossroads_messages_duplicate_total",
                             "Webhook deliveries of a message already stored (platform retries), by channel.")
TURNS = Counter("crossroads_turns_total", "Messages processed, by outcome (answered, postponed, rejected...).")
REPLIES = Counter("crossroads_replies_total", "Replies handed to a platform, by channel and result.")
RASA_SECONDS = Histogram("crossroads_rasa_seconds", "Time Rasa took for one message (all replicas).")
RESPONSE_SECONDS = Histogram("crossroads_response_seconds",
                             "From a message's arrival at the gateway to its answer being ready, by channel.")
DELIVERY_SECONDS = Histogram("crossroads_delivery_seconds",
                             "From a message's arrival to its first reply accepted by the platform, by channel.")
HANDOFF_WAIT_SECONDS = Histogram("crossroads_handoff_wait_seconds",
                                 "How long a person waited for a counsellor (request to assignment), by priority.",
                                 WAIT_BUCKETS)

REGISTRY = (MESSAGES_RECEIVED, MESSAGES_DUPLICATE, TURNS, REPLIES, RASA_SECONDS, RESPONSE_SECONDS, DELIVERY_SECONDS,
            HANDOFF_WAIT_SECONDS)


def queue_lines(db) -> List[str]:
    """Queue lengths and waiting times, read from the database now."""
    from sqlalchemy import func, select

    from bot.db import IN_PENDING, OUT_PENDING, Conversation, Handoff, Message, utcnow

    now = utcnow()
    with db.session() as s:
        inbox = s.execute(select(func.count(Message.id), func.min(Message.created_at))
                          .where(Message.direction == "in", Message.state == IN_PENDING)).one()
        outbox = s.execute(select(Conversation.channel, func.count(Message.id))
                           .join(Conversation, Conversation.id == Message.conversation_id)
                           .where(Message.direction == "out", Message.state == OUT_PENDING)
                           .group_by(Conversation.channel)).all()
        handoffs = s.execute(select(Handoff.status, Handoff.priority, func.count(Handoff.id),
                                    func.min(Handoff.waiting_since))
                             .where(Handoff.status.in_(("waiting", "assigned", "snoozed")))
                             .group_by(Handoff.status, Handoff.priority)).all()
    oldest_inbox = (now - inbox[1]).total_seconds() if inbox[1] else 0.0
    lines = gauge_lines("crossroads_inbox_pending", "Messages from people not yet answered.", [({}, inbox[0])])
    lines += gauge_lines("crossroads_inbox_oldest_seconds", "Age of the oldest unanswered message.",
                         [({}, round(max(oldest_inbox, 0.0), 3))])
    lines += gauge_lines("crossroads_outbox_pending", "Replies not yet accepted by the platform, by channel.",
                         [({"channel": c}, n) for c, n in outbox])
    lines += gauge_lines("crossroads_handoffs", "Open counsellor cases, by status and priority.",
                         [({"status": st, "priority": pr}, n) for st, pr, n, _ in handoffs])
    lines += gauge_lines("crossroads_handoff_oldest_waiting_seconds",
                         "How long the longest-waiting person in the queue has waited, by priority.",
                         [({"priority": pr}, round(max((now - since).total_seconds(), 0.0), 3))
                          for st, pr, _, since in handoffs if st == "waiting" and since is not None])
    return lines


def render(db=None, extra: Sequence[str] = ()) -> str:
    lines: List[str] = []
    for metric in REGISTRY:
        lines += metric.render()
    lines += list(extra)
    if db is not None:
        lines += queue_lines(db)
    return "\n".join(lines) + "\n"

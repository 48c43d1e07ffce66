"""The production profile (`make run-prod`): PostgreSQL, Redis, RabbitMQ, several Rasa replicas.

`python -m bot run --profile prod` starts the same topology as a Kubernetes deployment, as processes
on one machine: the gateway on PostgreSQL, N Rasa server replicas sharing a PostgreSQL tracker store
and a Redis lock store and publishing analytics events to RabbitMQ, and an action server with several
Sanic workers. Settings the operator has not given (environment or .env) take `PROD_DEFAULTS`, which
point at services on this machine (docs/production.md).
"""

from __future__ import annotations

import socket
from typing import Dict, List, Mapping, Optional, Tuple
from urllib.parse import unquote, urlsplit

from bot.errors import ConfigError
from bot.settings import ROOT, Settings, read_env_file

PROD_DEFAULTS = {
    "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/crossroads",
    "TRACKER_STORE_URL": "postgresql://postgres@127.0.0.1:5432/crossroads_rasa",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "EVENT_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672/",
    "LOG_FORMAT": "json",
}
RASA_BASE_PORT = 5005


def prod_environ(environ: Mapping[str, str], env_file_values: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """`environ` plus the production defaults for every setting neither it nor .env gives."""
    file_values = read_env_file(ROOT / ".env") if env_file_values is None else env_file_values
    merged = dict(environ)
    for key, value in PROD_DEFAULTS.items():
        if not merged.get(key) and not file_values.get(key):
            merged[key] = value
    return merged


def _parts(url: str, default_port: int) -> Tuple[str, int, str, str, str]:
    """(host, port, path without '/', user, password) of a URL."""
    parsed = urlsplit(url)
    if not parsed.hostname:
        raise ConfigError(f"{url.split('@')[-1]!r}: no host")
    return (parsed.hostname, parsed.port or default_port, unquote(parsed.path.lstrip("/")),
            unquote(parsed.username or ""), unquote(parsed.password or ""))


def store_environment(settings: Settings) -> Dict[str, str]:
    """What endpoints.prod.yml needs, from TRACKER_STORE_URL, REDIS_URL and EVENT_BROKER_URL."""
    if not settings.tracker_store_url.startswith(("postgresql://", "postgresql+psycopg2://")):
        raise ConfigError("the production profile needs TRACKER_STORE_URL=postgresql://… (Rasa's tracker store)")
    if not settings.database_url.startswith(("postgresql://", "postgresql+psycopg2://")):
        raise ConfigError("the production profile needs DATABASE_URL=postgresql://…")
    if not settings.redis_url or not settings.event_broker_url:
        raise ConfigError("the production profile needs REDIS_URL and EVENT_BROKER_URL")
    host, port, db, user, password = _parts(settings.tracker_store_url, 5432)
    env = {"RASA_TRACKER_HOST": host, "RASA_TRACKER_PORT": str(port), "RASA_TRACKER_DB": db or "rasa",
           "RASA_TRACKER_USER": user or "postgres", "RASA_TRACKER_PASSWORD": password}
    host, port, db, _, password = _parts(settings.redis_url, 6379)
    env.update({"REDIS_HOST": host, "REDIS_PORT": str(port), "REDIS_DB": db or "0", "REDIS_PASSWORD": password})
    host, port, _, user, password = _parts(settings.event_broker_url, 5672)
    env.update({"RABBITMQ_HOST": host, "RABBITMQ_PORT": str(port), "RABBITMQ_USER": user or "guest",
                "RABBITMQ_PASSWORD": password or "guest"})
    return env


def rasa_urls(replicas: int, base_port: int = RASA_BASE_PORT) -> List[str]:
    return [f"http://127.0.0.1:{base_port + i}" for i in range(replicas)]


def check_services(settings: Settings, timeout: float = 3.0) -> List[str]:
    """One line per service that does not accept connections (empty when all do)."""
    problems = []
    for name, url, port in (("PostgreSQL (DATABASE_URL)", settings.database_url, 5432),
                            ("PostgreSQL (TRACKER_STORE_URL)", settings.tracker_store_url, 5432),
                            ("Redis (REDIS_URL)", settings.redis_url or "", 6379),
                            ("RabbitMQ (EVENT_BROKER_URL)", settings.event_broker_url or "", 5672)):
        try:
            host, port, *_ = _parts(url, port)
            with socket.create_connection((host, port), timeout=timeout):
                pass
        except (OSError, ConfigError) as exc:
            problems.append(f"{name} at {url.split('@')[-1]}: {exc}")
    return problems


def ensure_database(url: str) -> bool:
    """Create the PostgreSQL database `url` names if it does not exist; True when it was created."""
    import psycopg2
    from psycopg2 import sql

    host, port, db, user, password = _parts(url, 5432)
    connection = psycopg2.connect(host=host, port=port, dbname="postgres", user=user or "postgres",
                                  password=password or None, connect_timeout=5)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,))
            if cursor.fetchone():
                return False
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
            return True
    finally:
        connection.close()

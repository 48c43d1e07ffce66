"""`python -m bot …`: one entry point for people running and maintaining Crossroads."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import List, Optional

from bot.settings import ROOT

ENV_FILE = ROOT / ".env"
# The webhook secrets are made too: they matter only once Telegram or WhatsApp is configured.
GENERATED_SECRETS = ("RASA_TOKEN", "NLG_TOKEN", "PSEUDONYM_KEY", "DATA_KEYS", "TELEGRAM_WEBHOOK_SECRET",
                     "WHATSAPP_VERIFY_TOKEN")


def ensure_env(path: Path = ENV_FILE) -> List[str]:
    """Create or complete .env with random development secrets; returns the keys it added."""
    from bot.settings import read_env_file

    existing = read_env_file(path)
    added = [k for k in GENERATED_SECRETS if not existing.get(k)]
    if added:
        with path.open("a", encoding="utf-8") as handle:
            if not existing:
                handle.write("# Local settings (not committed). See README.md, Configuration.\n")
            for key in added:
                handle.write(f"{key}={secrets.token_urlsafe(32)}\n")
        path.chmod(0o600)
    return added


def channel_summary(settings) -> str:
    """Which messaging channels are on, and how (never shows a secret)."""
    parts = ["web chat"]
    if settings.telegram_enabled:
        parts.append("Telegram (webhook " + settings.telegram_webhook_url + ")" if settings.telegram_webhook_url
                     else "Telegram (polling: no TELEGRAM_WEBHOOK_URL)")
    if settings.whatsapp_enabled:
        parts.append(f"WhatsApp (webhook at /whatsapp/webhook, phone number id {settings.whatsapp_phone_number_id})")
    off = [name for name, on in (("Telegram", settings.telegram_enabled), ("WhatsApp", settings.whatsapp_enabled))
           if not on]
    return ", ".join(parts) + (f"; off: {', '.join(off)} (see README, Channels)" if off else "")


def _db_for(settings):
    from bot.db import Database

    return Database(settings.database_url, keys=settings.data_keys)


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    import getpass

    first = getpass.getpass("password (12+ characters): ")
    if getpass.getpass("again: ") != first:
        raise SystemExit("error: the two passwords differ")
    return first


def _console_db():
    from bot.db import Database
    from bot.settings import load_settings

    db = _db_for(load_settings())
    db.upgrade()
    return db


def cmd_counsellors_add(args: argparse.Namespace) -> int:
    from bot.console.auth import AuthError, create_counsellor

    try:
        c = create_counsellor(_console_db(), args.username, _password(args), role=args.role,
                              languages=args.languages, display_name=args.name)
    except AuthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"counsellors: created {c.username} ({c.role}; languages: {c.languages or 'none'}); log in at /console")
    return 0


def cmd_counsellors_password(args: argparse.Namespace) -> int:
    from bot.console.auth import AuthError, set_password

    try:
        set_password(_console_db(), args.username, _password(args))
    except AuthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"counsellors: new password set for {args.username}; their sessions were ended")
    return 0


def cmd_counsellors_list(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from bot.db import Counsellor

    with _console_db().session() as s:
        for c in s.scalars(select(Counsellor).order_by(Counsellor.username)):
            state = "active" if c.active else "inactive"
            print(f"{c.username:<24} {c.role:<11} {c.languages or '-':<16} {state}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    added = ensure_env()
    if added:
        print(f"run: wrote new development secrets to .env ({', '.join(added)})")
    from bot.db import Database
    from bot.settings import load_settings
    from bot.supervisor import commands, environment, supervise
    from bot.training import model_path, train

    from bot.services import import_services

    prod = getattr(args, "profile", "dev") == "prod"
    if prod:
        from bot.profiles import check_services, ensure_database, prod_environ

        os.environ.update(prod_environ(os.environ))
    settings = load_settings()
    if prod:
        problems = check_services(settings)
        if problems:
            print("run: the production profile needs these services:\n  " + "\n  ".join(problems), file=sys.stderr)
            return 1
        for url in (settings.database_url, settings.tracker_store_url):
            if ensure_database(url):
                print(f"run: created database {url.rsplit('/', 1)[-1]}")
    db = Database(settings.database_url, keys=settings.data_keys)
    db.upgrade()
    print(f"run: database schema up to date ({settings.database_url.split('://')[0]})")
    report = import_services(db)
    print(f"run: service directory: {report.added} added, {report.updated} updated, {report.removed} removed")
    model = model_path() if args.no_train else train()
    if not model.exists():
        print("run: no trained model; run without --no-train", file=sys.stderr)
        return 1
    print(f"run: web chat at http://localhost:{settings.gateway_port}  (Ctrl-C stops everything)", flush=True)
    print(f"run: channels: {channel_summary(settings)}", flush=True)
    if prod:
        from bot.supervisor import prod_commands, prod_environment

        print(f"run: production profile: {settings.rasa_replicas} Rasa replicas, {settings.action_workers} action "
              f"server workers, PostgreSQL, Redis lock store, RabbitMQ events; health /health, readiness /ready, "
              f"metrics /metrics", flush=True)
        return supervise(prod_commands(settings, model), prod_environment(settings), restart=True,
                         as_json=settings.log_format == "json")
    return supervise(commands(settings, model), environment(settings))


def cmd_bench(args: argparse.Namespace) -> int:
    from bot.bench import main

    return main(["--only", args.only] if args.only else [])


def cmd_train(args: argparse.Namespace) -> int:
    from bot.training import train

    train(force=args.force)
    return 0


def _deploy_args(args):
    from bot.settings import load_settings

    settings = load_settings()
    from bot.rasa_client import parse_urls

    return settings, args.rasa_url or parse_urls(settings.rasa_url)


def cmd_model_deploy(args: argparse.Namespace) -> int:
    from bot.deploy import deploy
    from bot.training import model_path

    settings, urls = _deploy_args(args)
    model = Path(args.model) if args.model else model_path()
    done = deploy(model, urls, settings.rasa_token, wait_seconds=args.timeout)
    print(f"deploy: {done.model.name} serving on {len(done.servers)} Rasa server(s) in {done.seconds:.1f}s; "
          f"`python -m bot model rollback` goes back")
    return 0


def cmd_model_rollback(args: argparse.Namespace) -> int:
    from bot.deploy import deploy, previous_model

    settings, urls = _deploy_args(args)
    model = previous_model()
    done = deploy(model, urls, settings.rasa_token, action="rollback", wait_seconds=args.timeout)
    print(f"rollback: {done.model.name} serving again on {len(done.servers)} Rasa server(s) in {done.seconds:.1f}s")
    return 0


def cmd_model_path(args: argparse.Namespace) -> int:
    from bot.training import model_path

    print(model_path())
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from bot.evaluate import REPORT_DIR, gate, run

    run()
    summary = json.loads((REPORT_DIR / "summary.json").read_text(encoding="utf-8"))
    problems = gate(summary)
    for problem in problems:
        print(f"evaluate: {problem}", file=sys.stderr)
    if problems:
        print("evaluate: FAILED (reports/nlu/report.md lists the misses; do not deploy this model)", file=sys.stderr)
        return 1
    print("evaluate: passed; `python -m bot nlu accept` makes this the model new ones are compared with")
    return 0


def cmd_nlu_accept(args: argparse.Namespace) -> int:
    from bot.evaluate import accept

    record = accept()
    print(f"accept: {record['model']} is now the accepted model (reports/nlu/accepted.json): "
          + ", ".join(f"{l} {v['macro_f1']:.3f}" for l, v in record["languages"].items()))
    return 0


def _review_parts():
    return _privacy_parts()


def cmd_nlu_collect(args: argparse.Namespace) -> int:
    from bot.review import collect

    settings, db, tracker = _review_parts()
    report = collect(db, tracker, settings.review_confidence)
    print(f"review: {report.added} new, {report.merged} merged into existing items "
          f"({report.from_console} marked in the console, {report.from_tracker} from low-confidence turns)")
    return 0


def cmd_nlu_queue(args: argparse.Namespace) -> int:
    from bot.review import queue

    _, db, _ = _review_parts()
    items = queue(db, args.language)
    language = None
    for item in items:
        if item.language != language:
            language = item.language
            print(f"[{language}]")
        guess = f"{item.predicted_intent or '?'} {item.confidence if item.confidence is not None else '?'}%"
        print(f"  #{item.id:<5} x{item.count:<3} {item.source:<15} {guess:<28} {item.text}")
    print(f"review: {len(items)} pending")
    return 0


def cmd_nlu_export(args: argparse.Namespace) -> int:
    from bot.review import export

    _, db, _ = _review_parts()
    count = export(db, Path(args.file), args.language)
    print(f"review: {count} pending items written to {args.file}; set each `label:`, then "
          f"`python -m bot nlu import {args.file}`")
    return 0


def cmd_nlu_import(args: argparse.Namespace) -> int:
    from bot.review import ReviewError, apply, import_file

    _, db, _ = _review_parts()
    try:
        result = import_file(db, Path(args.file), reviewer=args.reviewer)
    except (ReviewError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for problem in result.errors:
        print(f"  problem: {problem}", file=sys.stderr)
    applied = apply(db)
    print(f"review: {result.labelled} labelled, {result.discarded} discarded, {result.skipped} left for later; "
          f"added to data/nlu: {applied.added or 'nothing'}; {applied.duplicates} already there")
    for conflict in applied.conflicts:
        print(f"  not added: {conflict}", file=sys.stderr)
    if applied.added:
        print("review: next `make train` and `make evaluate`, then `python -m bot model deploy`")
    return 1 if result.errors else 0


def cmd_nlu_apply(args: argparse.Namespace) -> int:
    from bot.review import apply

    _, db, _ = _review_parts()
    applied = apply(db)
    print(f"review: added to data/nlu: {applied.added or 'nothing'}; {applied.duplicates} already there")
    for conflict in applied.conflicts:
        print(f"  not added: {conflict}", file=sys.stderr)
    return 0


def cmd_content_check(args: argparse.Namespace) -> int:
    from bot.content import ContentStore

    report = ContentStore().coverage()
    failed = False
    print(f"{'language':<10}{'coverage':>10}  native review  problems")
    for code, row in report.items():
        print(f"{code:<10}{row['present']:>4}/{row['total']:<4} {row['coverage']:>5.0%}  "
              f"{'yes' if row['native_review'] else 'no':<13}  {len(row['problems'])}")
        for key in row["missing"]:
            print(f"    missing: {key}")
        for key in row["extra"]:
            print(f"    not in English (unused): {key}")
        for problem in row["problems"]:
            print(f"    problem: {problem}")
        launch = code in args.required
        if row["problems"] or (launch and row["coverage"] < 1.0):
            failed = True
    if failed:
        print("content check: FAILED (launch languages need 100% and no problems)", file=sys.stderr)
    return 1 if failed else 0


def cmd_content_sync(args: argparse.Namespace) -> int:
    from bot.content import ContentStore, sync_domain

    changed = sync_domain(ROOT / "domain.yml", ContentStore(), write=not args.check)
    if args.check and changed:
        print("domain.yml responses differ from data/content/en.yml: run `python -m bot content sync-domain`",
              file=sys.stderr)
        return 1
    print("domain.yml " + ("updated" if changed else "already in step"))
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from bot.db import Database
    from bot.settings import load_settings

    _db_for(load_settings()).upgrade()
    print("database: up to date")
    return 0


def _database():
    from bot.db import Database
    from bot.settings import load_settings

    db = _db_for(load_settings())
    db.upgrade()
    return db


def cmd_services_import(args: argparse.Namespace) -> int:
    from bot.services import import_services

    report = import_services(_database(), Path(args.dir))
    print(f"services: {report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
          f"{report.removed} removed")
    return 0


def cmd_services_find(args: argparse.Namespace) -> int:
    from bot.services import find_services, resolve_place

    db = _database()
    place = resolve_place(args.place, db)
    print(f"place: {place.city + ', ' if place and place.city else ''}{place.country.upper() if place else 'not recognised'}")
    for found in find_services(db, place, args.need or (), args.language, limit=args.limit):
        s = found.service
        note = "  (please check: not verified in the last 12 months)" if found.stale else ""
        print(f"- [{found.scope}] {s.organisation} · {s.types} · {s.city or 'country-wide'} · "
              f"{s.phone or ''} {s.website or ''}{note}\n    source: {s.source_name} "
              f"({s.source_year or 'accessed ' + str(s.source_accessed)}), verified {s.verified}")
    return 0


def _privacy_parts():
    from bot.settings import load_settings
    from bot.tracker_store import TrackerStore

    settings = load_settings()
    db = _db_for(settings)
    db.upgrade()
    return settings, db, TrackerStore(settings.tracker_store_url)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def cmd_privacy_purge(args: argparse.Namespace) -> int:
    from bot.privacy import purge

    settings, db, tracker = _privacy_parts()
    started = time.monotonic()

    def progress(done: int, total: int) -> None:
        if done == total or done % 100 == 0:
            print(f"purge: {done}/{total}", flush=True)

    report = purge(db, tracker, settings, dry_run=args.dry_run, progress=progress)
    plan = report.plan
    verb = "would erase" if args.dry_run else "erased"
    print(f"purge: {verb} {_plural(len(plan.conversations), 'conversation')} "
          f"({len(plan.expired_kept)} kept past {settings.retention_days:g} days, "
          f"{len(plan.idle_not_kept)} not kept and idle {settings.minimal_idle_minutes:g} minutes, "
          f"{len(plan.erase_requested)} erasure requests to finish) and the tracker events of "
          f"{_plural(len(plan.tracker_orphans), 'orphaned conversation')}; "
          f"{_plural(plan.kept_for_open_case, 'expired conversation')} kept for an open counsellor case; "
          f"{_plural(plan.expired_sessions, 'expired console session')}")
    if args.dry_run:
        for cid in plan.conversations:
            print(f"  conversation {cid}")
        for sender, events in plan.tracker_orphans.items():
            print(f"  tracker only {sender} ({_plural(events, 'event')})")
    else:
        print(f"purge: {report.gateway_rows} gateway rows and {report.tracker_events} tracker events removed in "
              f"{time.monotonic() - started:.1f}s; {report.failed} failed (retried at the next purge)")
    return 1 if report.failed else 0


def cmd_privacy_rotate(args: argparse.Namespace) -> int:
    from bot.privacy import rotate_keys

    settings, db, _ = _privacy_parts()
    started = time.monotonic()
    changed = rotate_keys(db, progress=lambda column, n: print(f"rotate-key: {column}: {n} checked", flush=True))
    print(f"rotate-key: {changed} values re-encrypted with the first key of DATA_KEYS in "
          f"{time.monotonic() - started:.1f}s; the other keys can now be removed")
    return 0


def cmd_privacy_erase(args: argparse.Namespace) -> int:
    from bot.privacy import erase_person

    settings, db, tracker = _privacy_parts()
    erased = erase_person(db, tracker, args.conversation)
    if not erased.complete:
        print("erase: the tracker store could not be reached; the request is recorded and the worker retries",
              file=sys.stderr)
        return 1
    print(f"erase: {erased.gateway_rows} gateway rows and {erased.tracker_events} tracker events removed")
    return 0


def cmd_lang_add(args: argparse.Namespace) -> int:
    from bot.scaffold import add

    created = add(args.code, args.name, args.direction)
    for path in created:
        print(f"lang: wrote {path.relative_to(ROOT)}")
    print(f"lang: next: write them (docs/adding-a-language.md); `python -m bot lang check {args.code}` lists what "
          "is missing")
    return 0


def cmd_lang_check(args: argparse.Namespace) -> int:
    from bot.scaffold import MIN_EXAMPLES, check

    missing = check(args.code)
    print(f"{args.code}: answers missing: {len(missing.content)}")
    for key in missing.content:
        print(f"    {key}")
    print(f"{args.code}: intents with fewer than {MIN_EXAMPLES} examples: {len(missing.nlu)}")
    for intent, count in missing.nlu.items():
        print(f"    {intent}: {count}")
    print(f"{args.code}: safety lexicon categories without patterns: {', '.join(missing.lexicon) or 'none'}")
    print(f"{args.code}: safety test set short of: {', '.join(missing.safety_set) or 'nothing'}")
    print(f"{args.code}: {'complete' if missing.complete else 'incomplete'}")
    return 0 if missing.complete else 1


def cmd_config(args: argparse.Namespace) -> int:
    from bot.settings import load_settings

    print(json.dumps(load_settings().describe(), indent=2))
    return 0


LAUNCH_LANGUAGES = ["en", "fr", "ar", "es", "fa", "ti", "ps", "so", "ur", "bn", "ru", "ka"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bot", description="Crossroads: run, train, evaluate, check content.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="train if needed, then start Rasa, actions and the gateway",
                         description="Start everything (Ctrl-C stops all processes). dev: SQLite, one Rasa "
                                     "server. prod: PostgreSQL, Redis lock store, RabbitMQ events, RASA_REPLICAS "
                                     "Rasa servers, JSON logs, restarts (docs/production.md).")
    run.add_argument("--no-train", action="store_true", help="use the existing model, never train")
    run.add_argument("--profile", choices=["dev", "prod"], default="dev",
                     help="dev (default: embedded SQLite) or prod (the production profile)")
    run.set_defaults(func=cmd_run)

    bench = sub.add_parser("bench", help="benchmark against stock Rasa, then the load-and-failure test",
                           description="Stock `rasa init` vs this assistant's production profile (REST at 1/10/50 "
                                       "conversations, long conversations, Telegram end to end), then 50 x 40 "
                                       "Telegram messages while a Rasa replica and PostgreSQL restart. Writes "
                                       "reports/bench/. Needs PostgreSQL, Redis and RabbitMQ (docs/production.md).")
    bench.add_argument("--only", choices=["failure"], help="run only the load-and-failure test")
    bench.set_defaults(func=cmd_bench)

    model = sub.add_parser("model", help="train, deploy or roll back the model", description="The Rasa model.")
    msub = model.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    t = msub.add_parser("train", help="train when training data or config changed", description="Train the model.")
    t.add_argument("--force", action="store_true", help="train even when an up-to-date model exists")
    t.set_defaults(func=cmd_train)
    for name, func, text in (("deploy", cmd_model_deploy, "load a model into the running Rasa servers, one at a time"),
                             ("rollback", cmd_model_rollback, "load the model deployed before the current one")):
        d = msub.add_parser(name, help=text, description=text.capitalize() + " (no restart; messages that "
                            "arrive meanwhile wait in the gateway and are answered once). Recorded in "
                            "var/deployments.json.")
        if name == "deploy":
            d.add_argument("--model", help="model file (default: the one `make train` made for the current data)")
        d.add_argument("--rasa-url", action="append", metavar="URL",
                       help="a Rasa server (repeat for replicas; default RASA_URL)")
        d.add_argument("--timeout", type=float, default=300, help="seconds to wait for each server (default 300)")
        d.set_defaults(func=func)
    mp = msub.add_parser("path", help="print the path the current model has or will have", description="Model path.")
    mp.set_defaults(func=cmd_model_path)

    nlu = sub.add_parser("nlu", help="evaluate intents; review what the assistant misunderstood",
                         description="NLU tools: evaluation and the maintainers' review queue (docs/maintainers.md).")
    nsub = nlu.add_subparsers(dest="nlu_command", required=True, metavar="ACTION")
    ev = nsub.add_parser("evaluate", help="train on the training split and score the held-out split per language",
                         description="Writes reports/nlu/summary.json, report.md and charts; compares with the "
                                     "accepted model; exit 1 below target, a drop of more than 2 points in any "
                                     "language, or safety recall below 1.0.")
    ev.set_defaults(func=cmd_evaluate)
    nac = nsub.add_parser("accept", help="make the last evaluated model the baseline for comparisons",
                          description="Record the last `make evaluate` as the accepted model (reports/nlu/accepted.json).")
    nac.set_defaults(func=cmd_nlu_accept)
    nc = nsub.add_parser("collect", help="add misunderstood messages (redacted) to the review queue",
                         description="Collect what counsellors marked and low-confidence turns (the gateway also "
                                     "does this every minute).")
    nc.set_defaults(func=cmd_nlu_collect)
    nq = nsub.add_parser("queue", help="list the review queue by language", description="Pending review items.")
    nq.add_argument("--language", help="only this language")
    nq.set_defaults(func=cmd_nlu_queue)
    ne = nsub.add_parser("export", help="write pending items to a YAML file for reviewing",
                         description="Write pending review items (redacted) to FILE; label them there.")
    ne.add_argument("file", help="the YAML file to write, e.g. review.yml")
    ne.add_argument("--language", help="only this language")
    ne.set_defaults(func=cmd_nlu_export)
    ni = nsub.add_parser("import", help="read labels from an exported file and add them to data/nlu",
                         description="Apply the labels of FILE (an intent, out_of_scope or discard) and write the "
                                     "labelled examples into data/nlu/<language>.yml, never twice.")
    ni.add_argument("file", help="a file written by `nlu export`")
    ni.add_argument("--reviewer", default="yaml", help="who reviewed (recorded with each decision)")
    ni.set_defaults(func=cmd_nlu_import)
    na = nsub.add_parser("apply", help="write items labelled in the console into data/nlu",
                         description="Add every labelled item to data/nlu/<language>.yml (no duplicates).")
    na.set_defaults(func=cmd_nlu_apply)

    content = sub.add_parser("content", help="check or sync the answers in data/content", description="Content tools.")
    csub = content.add_subparsers(dest="content_command", required=True, metavar="ACTION")
    ch = csub.add_parser("check", help="coverage per language; fails below 100%% for launch languages",
                         description="Print coverage and problems per language.")
    ch.add_argument("--required", nargs="*", default=LAUNCH_LANGUAGES, metavar="LANG",
                    help="languages that must be complete (default: the launch languages)")
    ch.set_defaults(func=cmd_content_check)
    sy = csub.add_parser("sync-domain", help="copy English answers into domain.yml's responses",
                         description="Keep domain.yml's responses in step with data/content/en.yml.")
    sy.add_argument("--check", action="store_true", help="only report whether domain.yml is out of step")
    sy.set_defaults(func=cmd_content_sync)

    db = sub.add_parser("db", help="database migrations", description="Database tools.")
    dsub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    up = dsub.add_parser("upgrade", help="apply every migration", description="Apply migrations (idempotent).")
    up.set_defaults(func=cmd_db_upgrade)

    services = sub.add_parser("services", help="the service directory", description="Service directory tools.")
    ssub = services.add_subparsers(dest="services_command", required=True, metavar="ACTION")
    si = ssub.add_parser("import", help="load data/services/*.yml into the database (idempotent)",
                         description="Add, update and remove services so the database matches the files.")
    si.add_argument("--dir", default=str(ROOT / "data" / "services"), help="folder of service files")
    si.set_defaults(func=cmd_services_import)
    sf = ssub.add_parser("find", help="look services up by place (any language) and need",
                         description="Resolve a place name and list the best services.")
    sf.add_argument("place", help='a city or country in any language, e.g. "Bruxelles" or "بروكسل"')
    sf.add_argument("--need", action="append", metavar="TYPE", help="a service type (repeatable), e.g. legal_aid")
    sf.add_argument("--language", help="prefer services that speak this language (ISO 639-1)")
    sf.add_argument("--limit", type=int, default=5, help="how many results (default 5)")
    sf.set_defaults(func=cmd_services_find)

    co = sub.add_parser("counsellors", help="console accounts", description="Create and manage console accounts.")
    cosub = co.add_subparsers(dest="counsellors_command", required=True, metavar="ACTION")
    ca = cosub.add_parser("add", help="create an account (asks for the password)",
                          description="Create a console account. The password is asked twice, or read from "
                                      "standard input with --password-stdin (at least 12 characters).")
    ca.add_argument("username", help="3-64 characters of a-z, 0-9, '.', '_' or '-'")
    ca.add_argument("--role", choices=["counsellor", "supervisor", "admin", "maintainer"], default="counsellor",
                    help="counsellor (default), supervisor (sees every case, statistics) or admin")
    ca.add_argument("--languages", default="", help="languages the person speaks, e.g. 'ar,fr' (routes cases)")
    ca.add_argument("--name", default="", help="name shown to colleagues (never to the people counselled)")
    ca.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    ca.set_defaults(func=cmd_counsellors_add)
    cp = cosub.add_parser("password", help="set a new password (ends the account's sessions, lifts a lock-out)",
                          description="Set a new password.")
    cp.add_argument("username")
    cp.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    cp.set_defaults(func=cmd_counsellors_password)
    cl = cosub.add_parser("list", help="list accounts (no passwords)", description="List console accounts.")
    cl.set_defaults(func=cmd_counsellors_list)

    pr = sub.add_parser("privacy", help="retention purge, erasure, key rotation (docs/privacy.md)",
                        description="Privacy tools. Conversation ids are the pseudonymous ids Rasa sees.")
    prsub = pr.add_subparsers(dest="privacy_command", required=True, metavar="ACTION")
    pp = prsub.add_parser("purge", help="erase what is past its retention time (the worker also does this)",
                          description="Erase conversations past RETENTION_DAYS (kept) or MINIMAL_IDLE_MINUTES "
                                      "(not kept), except open counsellor cases, with their Rasa tracker events.")
    pp.add_argument("--dry-run", action="store_true", help="only list what would be erased")
    pp.set_defaults(func=cmd_privacy_purge)
    prk = prsub.add_parser("rotate-key", help="re-encrypt stored values with the first key of DATA_KEYS",
                           description="After putting a new key first in DATA_KEYS: re-encrypt everything with it.")
    prk.set_defaults(func=cmd_privacy_rotate)
    pe = prsub.add_parser("erase", help="erase one conversation (a request made outside the chat)",
                          description="Erase one conversation's gateway rows and Rasa tracker events.")
    pe.add_argument("conversation", help="the pseudonymous conversation id (shown in the console)")
    pe.set_defaults(func=cmd_privacy_erase)

    lang = sub.add_parser("lang", help="add a language and see what it lacks (docs/adding-a-language.md)",
                          description="Languages.")
    lsub = lang.add_subparsers(dest="lang_command", required=True, metavar="ACTION")
    la = lsub.add_parser("add", help="write the files a new language needs",
                         description="Scaffold data/content, data/nlu, data/safety and tests/safety for CODE.")
    la.add_argument("code", help="ISO 639-1 code, e.g. ps, so, ur, bn, ru, ka")
    la.add_argument("--name", required=True, help="the language's name in itself, e.g. پښتو or Soomaali")
    la.add_argument("--direction", choices=["ltr", "rtl"], help="script direction (default: rtl for ar, fa, ps, ur...)")
    la.set_defaults(func=cmd_lang_add)
    lc = lsub.add_parser("check", help="what a language still lacks (exit 1 until complete)",
                         description="Answers, training examples per intent, lexicon and safety set of CODE.")
    lc.add_argument("code")
    lc.set_defaults(func=cmd_lang_check)

    cfg = sub.add_parser("config", help="print the effective settings (secrets masked)", description="Show settings.")
    cfg.set_defaults(func=cmd_config)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a clear message instead of a traceback for expected errors
        from bot.errors import CrossroadsError

        if isinstance(exc, CrossroadsError):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise

"""No secret in the repository: tracked files hold no token- or key-shaped strings."""

from __future__ import annotations

import re
import subprocess

from bot.settings import ROOT

# Shapes of real credentials (the tests' own made-up values are long words, not these shapes).
PATTERNS = {
    "telegram bot token": re.compile(r"\b\d{8,10}:[A-Za-z0-9_-]{35}\b"),
    "meta access token": re.compile(r"\bEAA[A-Za-z0-9]{60,}\b"),
    "private key": re.compile(r"-----BEGIN (?:RSA |EC |OPENSSH )?PRIVATE KEY-----"),
    "aws key": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    "fernet key": re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}=(?![A-Za-z0-9_=-])"),
    "generated .env secret assignment": re.compile(
        r"^(?:RASA_TOKEN|NLG_TOKEN|PSEUDONYM_KEY|DATA_KEYS|TELEGRAM_BOT_TOKEN|WHATSAPP_ACCESS_TOKEN|"
        r"WHATSAPP_APP_SECRET)=[A-Za-z0-9_-]{20,}$", re.MULTILINE),
}


def tracked_files():
    try:
        names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        return [ROOT / n for n in names.splitlines()]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: every file but local state
        skip = {".git", ".venv", "var", "models", "node_modules"}
        return [p for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.relative_to(ROOT).parts)]


def test_no_secret_in_the_repository():
    files = tracked_files()
    assert ROOT / ".env" not in files
    found = []
    for path in files:
        if not path.is_file() or path.stat().st_size > 5_000_000:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        found += [(str(path.relative_to(ROOT)), name) for name, pattern in PATTERNS.items() if pattern.search(text)]
    assert found == []


def test_the_scanner_finds_what_it_looks_for():
    # Built at run time, so that this file itself holds no token-shaped string.
    assert PATTERNS["telegram bot token"].search("token " + "1234" + "56789:" + "AAHdqTcvCH1vGWJx" * 2 + "abc x")
    assert PATTERNS["fernet key"].search("key=" + "A" * 43 + "=")
    assert PATTERNS["generated .env secret assignment"].search("DATA_KEYS=" + "k" * 43)

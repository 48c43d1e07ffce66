#!/usr/bin/env bash
# Create .venv with Python 3.10 and install the locked dependencies.
# Idempotent: a second run only checks a stamp and exits.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
LOCK=requirements.lock
STAMP="$VENV/.installed-$(sha256sum "$LOCK" | cut -c1-16)"

find_python310() {
  local candidates=()
  [ -n "${PYTHON310:-}" ] && candidates+=("$PYTHON310")
  candidates+=(python3.10 /usr/bin/python3.10 /usr/local/bin/python3.10)
  if command -v pyenv >/dev/null 2>&1; then
    candidates+=("$(pyenv root)"/versions/3.10*/bin/python3.10)
  fi
  local p
  for p in "${candidates[@]}"; do
    if "$p" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 10) else 1)' >/dev/null 2>&1; then
      echo "$p"; return 0
    fi
  done
  return 1
}

# The console's browser tests drive Debian's Chromium (no browser is downloaded at run time);
# Noto fonts render Arabic, Persian and Tigrinya in screenshots.
find_chromium() {
  local p
  for p in "${CHROMIUM:-}" chromium chromium-browser /usr/bin/chromium; do
    [ -n "$p" ] && command -v "$p" >/dev/null 2>&1 && { command -v "$p"; return 0; }
  done
  return 1
}

install_chromium() {
  find_chromium >/dev/null && return 0
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; else
      echo "install: Chromium is missing (needed by the console's browser tests). Install it with:" >&2
      echo "           apt-get install chromium fonts-noto-core" >&2
      return 0
    fi
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "install: Chromium is missing and this is not a Debian-like system; install Chromium and set CHROMIUM" >&2
    return 0
  fi
  echo "install: installing Chromium and Noto fonts (Debian packages, about a minute)"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-noto-core >/dev/null
}

install_chromium

if [ -f "$STAMP" ] && [ -x "$VENV/bin/python" ]; then
  echo "install: .venv is up to date ($LOCK unchanged)"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  if ! PY=$(find_python310); then
    cat >&2 <<'MSG'
install: Python 3.10 was not found.
  Rasa 3.6 needs Python >=3.8,<3.11 (on 3.11 pip silently picks an ancient Rasa).
  Install it, then run `make install` again, for example:
    - Debian/Ubuntu:  apt-get install python3.10 python3.10-venv
    - pyenv:          pyenv install 3.10.13
  or point PYTHON310 at an interpreter:  make install PYTHON310=/path/to/python3.10
MSG
    exit 1
  fi
  echo "install: creating $VENV with $PY"
  "$PY" -m venv "$VENV"
fi

start=$(date +%s)
echo "install: installing locked dependencies (first time: about 2 minutes)"
"$VENV/bin/python" -m pip install --quiet --upgrade "pip<25" wheel "setuptools<71"
"$VENV/bin/python" -m pip install --quiet --progress-bar off -r "$LOCK"
"$VENV/bin/python" -m pip check
rm -f "$VENV"/.installed-*
touch "$STAMP"
echo "install: done in $(( $(date +%s) - start ))s"

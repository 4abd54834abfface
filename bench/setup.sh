#!/bin/sh
# Installs what the `net` group needs beyond cargo: wrk (HTTP load) and
# Twisted in a virtual environment at bench/.venv. Safe to re-run.
set -e
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v wrk >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq wrk
fi
if [ ! -x "$here/.venv/bin/twistd" ]; then
    python3 -m venv "$here/.venv"
    "$here/.venv/bin/pip" install -q --disable-pip-version-check twisted
fi
echo "setup: wrk $(command -v wrk), twisted $("$here/.venv/bin/python" -c 'import twisted; print(twisted.__version__)')"

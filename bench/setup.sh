#!/bin/sh
# Installs what the `net` group needs beyond cargo: wrk (HTTP load) and
# Twisted (with its TLS extra, pyOpenSSL) in a virtual environment at bench/.venv. Safe to re-run.
set -e
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v wrk >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq wrk
fi
if ! "$here/.venv/bin/python" -c 'import twisted, OpenSSL' >/dev/null 2>&1; then
    [ -x "$here/.venv/bin/python" ] || python3 -m venv "$here/.venv"
    # The tls extra brings pyOpenSSL, which Twisted's listenSSL uses.
    "$here/.venv/bin/pip" install -q --disable-pip-version-check 'twisted[tls]'
fi
echo "setup: wrk $(command -v wrk), twisted $("$here/.venv/bin/python" -c 'import twisted; print(twisted.__version__)')"

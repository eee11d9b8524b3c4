#!/usr/bin/env bash
# Installs what decryptd needs on a Debian machine, and only what is missing:
# the C libraries it links (librdkafka, libpq, libcrypto, jemalloc), pkg-config, the PostgreSQL server
# the tests and the demo start, and what the tests read its output with (Prometheus and promtool,
# Chromium). Works as root, or as a user with passwordless sudo.
set -euo pipefail

packages=(pkg-config librdkafka-dev libpq-dev libssl-dev libjemalloc-dev postgresql prometheus chromium)
missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done

if ((${#missing[@]})); then
    if [ "$(id -u)" = 0 ]; then
        as_root=()
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        as_root=(sudo -n)
    else
        echo "setup: these Debian packages are missing and installing them needs root or passwordless sudo: ${missing[*]}" >&2
        exit 2
    fi
    echo "setup: installing ${missing[*]}"
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # Debian starts a default cluster after installing postgresql; we never use it (we start our own).
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v swift >/dev/null 2>&1; then
    echo "setup: no swift on PATH (expected Swift 6 at /opt/swift/usr/bin)" >&2
    exit 2
fi

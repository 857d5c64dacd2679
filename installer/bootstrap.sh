#!/usr/bin/env bash
# Install the host packages Corral needs (idempotent; a no-op in about a second
# when everything is present). Needs root (or sudo) only when something is missing.
set -euo pipefail
cd "$(dirname "$0")"

mapfile -t wanted < <(grep -vE '^\s*(#|$)' system-packages.txt)
missing=()
for package in "${wanted[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || missing+=("$package")
done
# node/npm may come from NodeSource or nvm rather than Debian: accept any working npm.
if command -v npm >/dev/null && command -v node >/dev/null; then
    filtered=()
    for package in "${missing[@]}"; do
        [[ "$package" == nodejs || "$package" == npm ]] || filtered+=("$package")
    done
    missing=("${filtered[@]}")
fi
if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi

echo "corral: installing system packages: ${missing[*]}"
if [[ $(id -u) -eq 0 ]]; then
    sudo=()
elif command -v sudo >/dev/null; then
    sudo=(sudo)
else
    echo "corral: these packages are missing and you are not root: ${missing[*]}" >&2
    echo "        run: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"

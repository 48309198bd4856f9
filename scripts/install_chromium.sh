#!/usr/bin/env bash
# Make sure Debian's headless-capable `chromium` is installed (the lab's end-to-end test loads the
# Spark, Airflow, MLflow and Jupyter pages in it). Idempotent: does nothing when it is there.
# Installs with apt-get as root, else through `sudo -n`; otherwise stops with one sentence.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
  exit 0
fi

packages=(chromium fonts-liberation)
if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "chromium is required and was not found: install it as root (apt-get install chromium fonts-liberation) and run make again." >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "chromium is required and was not found, and this is not a Debian/Ubuntu system with apt-get: install Chromium with your package manager so that \`chromium\` is on PATH." >&2
  exit 1
fi

echo "chromium: installing ${packages[*]} with apt-get (once)"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
command -v chromium >/dev/null 2>&1 || {
  echo "apt-get finished but \`chromium\` is still not on PATH: check the apt output above." >&2
  exit 1
}
echo "chromium: $(chromium --version 2>/dev/null || echo installed)"

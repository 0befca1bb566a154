#!/usr/bin/env bash
# Creates target/pyvenv with the providers' own webhook SDKs, used by the webhook-log
# signature tests (tests/api/webhook_log/sdk.rs) to sign requests independently of opshub.
# Idempotent; versions pinned so a new SDK release cannot change a CI run silently.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=target/pyvenv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  stripe==16.1.0 slack-sdk==3.47.0 standardwebhooks==1.1.0
"$venv/bin/python" -c "import stripe, slack_sdk, standardwebhooks" && echo "python SDKs ready in $venv"

#!/usr/bin/env bash
# Creates target/pyvenv with third-party webhook libraries, used by tests that check opshub
# against independent implementations: the Standard Webhooks and Svix verifiers (outbound
# conformance) and the providers' own SDKs (incoming signature checks).
# Idempotent; versions pinned so a new release cannot change a CI run silently.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=target/pyvenv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  stripe==16.1.0 slack-sdk==3.47.0 standardwebhooks==1.1.0 svix==2.9.1 schemathesis==4.32.5
"$venv/bin/python" -c "import stripe, slack_sdk, standardwebhooks, svix, schemathesis" && echo "python libraries ready in $venv"

"""Signs webhook requests with the providers' own SDKs, for opshub's verifier tests.

Reads {"requests": [{"scheme", "secret", "body", "timestamp", "id"}]} as JSON on stdin and
prints a JSON list with, for each request, the headers its provider would send. Schemes:
stripe (stripe), slack (slack_sdk), standard-webhooks (standardwebhooks).
"""

import json
import sys
from datetime import datetime, timezone

import standardwebhooks
import stripe
from slack_sdk.signature import SignatureVerifier


def sign(req):
    scheme, secret, body, ts = req["scheme"], req["secret"], req["body"], req["timestamp"]
    if scheme == "stripe":
        header = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=ts)
        return {"stripe-signature": header}
    if scheme == "slack":
        sig = SignatureVerifier(secret).generate_signature(timestamp=str(ts), body=body)
        return {"x-slack-request-timestamp": str(ts), "x-slack-signature": sig}
    if scheme == "standard-webhooks":
        when = datetime.fromtimestamp(ts, tz=timezone.utc)
        sig = standardwebhooks.Webhook(secret).sign(req["id"], when, body)
        return {"webhook-id": req["id"], "webhook-timestamp": str(ts), "webhook-signature": sig}
    raise SystemExit(f"unknown scheme {scheme}")


json.dump([sign(r) for r in json.load(sys.stdin)["requests"]], sys.stdout)

"""Verifies deliveries captured from opshub with the official Standard Webhooks and Svix
libraries. Reads a JSON list of {"secret", "headers", "body"} on stdin; prints a JSON list
of {"standardwebhooks": null | error, "svix": null | error}, one per case."""
import json
import sys

import standardwebhooks
from svix.webhooks import Webhook as SvixWebhook


def check(verify):
    try:
        verify()
        return None
    except Exception as e:  # the libraries raise their own error types
        return f"{type(e).__name__}: {e}"


results = []
for case in json.load(sys.stdin):
    body, headers, secret = case["body"], case["headers"], case["secret"]
    results.append({
        "standardwebhooks": check(lambda: standardwebhooks.Webhook(secret).verify(body, headers)),
        "svix": check(lambda: SvixWebhook(secret).verify(body, headers)),
    })
print(json.dumps(results))

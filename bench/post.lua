-- One Stripe-like JSON event per request (about 300 bytes), the same for every request.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["User-Agent"] = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"
wrk.body = '{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event","api_version":"2022-11-15","created":1686089970,"data":{"object":{"id":"in_1NG8Dt2eZvKYlo2C2tNVqS5Q","object":"invoice","amount_due":4200,"currency":"eur","status":"paid"}},"livemode":false,"type":"invoice.paid"}'

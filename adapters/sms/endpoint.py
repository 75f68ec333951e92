"""The SMS adapter's small HTTP endpoint, fetched by Kannel's smsbox.

* ``GET /kannel/<token>/dlr?i=&m=&to=&c=&type=%d&reply=%A`` — a delivery report (the
  ``dlr-url`` the adapter gave with the message): recorded as ``sms_delivered`` or
  ``sms_undelivered``;
* ``GET /kannel/<token>/mo?from=%p&to=%P&text=%a&id=%I`` — an inbound message (an
  ``sms-service`` ``get-url``): ``STOP`` withdraws consent, ``HELP`` is answered, anything
  else is recorded. The response body is the reply smsbox sends back (empty = none, with
  ``omit-empty = true`` in the sms-service).

The token in the path keeps strangers from unsubscribing customers or forging reports: a
wrong one gets 404. A report or message the hub cannot record gets 503, so that smsbox
(``http-request-retry``) asks again instead of the response being lost; a malformed one
gets 400 with the reason and changes nothing.
"""

from __future__ import annotations

import hmac
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from .text import Undeliverable


def make_app(adapter: Any) -> Starlette:
    def authorised(request: Request) -> bool:
        return hmac.compare_digest(request.path_params["token"].encode(), adapter.token.encode())

    async def dlr(request: Request) -> Response:
        if not authorised(request):
            return PlainTextResponse("unknown", status_code=404)
        q = dict(request.query_params)
        try:
            res = await adapter.on_dlr(q)
        except Exception as exc:  # noqa: BLE001 - the hub is away: smsbox retries
            adapter.log.warning("sms: recording a delivery report failed: %s", exc)
            return PlainTextResponse("try again", status_code=503, headers={"Retry-After": "5"})
        if res is None:
            return PlainTextResponse("a delivery report needs i, m, to and a numeric type", status_code=400)
        if res.get("status") == "rejected":
            # e.g. the number left the customer: nothing to retry, say why
            return PlainTextResponse(f"not recorded: {res.get('error')}", status_code=422)
        return PlainTextResponse("ok")

    async def inbound(request: Request) -> Response:
        if not authorised(request):
            return PlainTextResponse("unknown", status_code=404)
        q = request.query_params
        sender, text = q.get("from", ""), q.get("text", "")
        if not sender:
            return PlainTextResponse("", status_code=400)
        try:
            reply = await adapter.on_inbound(sender, q.get("to", ""), text, q.get("id", ""))
        except Undeliverable as exc:
            adapter.log.info("sms: inbound message from a number that is not one: %s", exc)
            return PlainTextResponse("", status_code=400)
        except Exception as exc:  # noqa: BLE001 - the hub is away: smsbox retries
            adapter.log.warning("sms: recording an inbound message failed: %s", exc)
            return PlainTextResponse("", status_code=503, headers={"Retry-After": "5"})
        return PlainTextResponse(reply, media_type="text/plain; charset=utf-8")

    return Starlette(routes=[
        Route("/kannel/{token}/dlr", dlr, methods=["GET", "POST"]),
        Route("/kannel/{token}/mo", inbound, methods=["GET", "POST"]),
    ])

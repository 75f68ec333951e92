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

Why ``aiohttp.web`` and not uvicorn + Starlette (the other adapters' endpoints): every SMS
brings one or two requests here (``dlr_mask`` 27: the SMSC's acceptance and the final
report), and uvicorn without ``httptools`` parses HTTP in pure Python (h11). Serving a
report cost ~850 µs of the adapter's CPU through uvicorn/h11 + Starlette against ~320 µs
through aiohttp's server (C parser), the same handler, same machine (docs/benchmarks.md §65).
"""

from __future__ import annotations

import hmac
from typing import Any

from aiohttp import web

from .text import Undeliverable

#: what smsbox is told when the hub cannot take a report or message now: it retries
RETRY = {"Retry-After": "5"}


def make_app(adapter: Any) -> web.Application:
    def authorised(request: web.Request) -> bool:
        return hmac.compare_digest(request.match_info["token"].encode(), adapter.token.encode())

    async def dlr(request: web.Request) -> web.Response:
        if not authorised(request):
            return web.Response(text="unknown", status=404)
        q = dict(request.query)
        try:
            res = await adapter.on_dlr(q)
        except Exception as exc:  # noqa: BLE001 - the hub is away: smsbox retries
            adapter.log.warning("sms: recording a delivery report failed: %s", exc)
            return web.Response(text="try again", status=503, headers=RETRY)
        if res is None:
            return web.Response(text="a delivery report needs i, m, to and a numeric type", status=400)
        if res.get("status") == "rejected":
            # e.g. the number left the customer: nothing to retry, say why
            return web.Response(text=f"not recorded: {res.get('error')}", status=422)
        return web.Response(text="ok")

    async def inbound(request: web.Request) -> web.Response:
        if not authorised(request):
            return web.Response(text="unknown", status=404)
        q = request.query
        sender, text = q.get("from", ""), q.get("text", "")
        if not sender:
            return web.Response(text="", status=400)
        try:
            reply = await adapter.on_inbound(sender, q.get("to", ""), text, q.get("id", ""))
        except Undeliverable as exc:
            adapter.log.info("sms: inbound message from a number that is not one: %s", exc)
            return web.Response(text="", status=400)
        except Exception as exc:  # noqa: BLE001 - the hub is away: smsbox retries
            adapter.log.warning("sms: recording an inbound message failed: %s", exc)
            return web.Response(text="", status=503, headers=RETRY)
        return web.Response(text=reply, content_type="text/plain", charset="utf-8")

    app = web.Application()
    for method in ("GET", "POST"):
        app.router.add_route(method, "/kannel/{token}/dlr", dlr)
        app.router.add_route(method, "/kannel/{token}/mo", inbound)
    return app


async def serve(adapter: Any, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start the endpoint on ``host:port`` (0 = any free port) on the running loop:
    (the runner, for ``cleanup()``, and the port it listens on)."""
    runner = web.AppRunner(make_app(adapter), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner, runner.addresses[0][1]


__all__ = ["make_app", "serve"]

"""Request size limits: uploads over the limit are refused early, with a clear 413."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.responses import JSONResponse

# A refused upload's body is read and dropped up to this much, so that the client,
# still sending, gets the 413 instead of a reset connection.
DRAIN_LIMIT = 256 * 2**20


class BodyLimit:
    """ASGI middleware: refuse request bodies over `limit` bytes with 413, early."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._drain(receive)
            await self._refuse(send)
            return
        seen = 0
        too_big = False
        started = False
        body_done = False

        async def counting_receive() -> dict:
            nonlocal seen, too_big, body_done
            message = await receive()
            if message["type"] == "http.request":
                body_done = not message.get("more_body", False)
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    too_big = True
                    raise _TooBig
            return message

        async def guarded_send(message: dict) -> None:
            nonlocal started
            # Once the body ran over, whatever the app answers is replaced by the 413.
            if not too_big:
                started = True
                await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not too_big or started:
                raise
        if too_big and not started:
            if not body_done:
                await self._drain(receive)
            await self._refuse(send)

    async def _drain(self, receive: Callable) -> None:
        drained = 0
        while drained < DRAIN_LIMIT:
            message = await receive()
            if message["type"] != "http.request":
                return
            drained += len(message.get("body", b""))
            if not message.get("more_body"):
                return

    async def _refuse(self, send: Callable) -> None:
        mib = self.limit / 2**20
        body = JSONResponse(
            {"detail": f"upload too large: the limit is {mib:g} MiB; send a smaller photo"},
            status_code=413,
        ).body
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooBig(Exception):
    pass

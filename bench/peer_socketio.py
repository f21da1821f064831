"""The python-socketio peer: the same chat, as python-socketio apps would write it.

One process per node, on aiohttp (as the gateway is), all sharing one Redis through
socketio.AsyncRedisManager. A client emits `join` {room, name} (acked once it is in
the room) and `send` {room, text}; the server emits `msg` {room, from, text, ts} to the
room (the sender included, as the gateway does) and acks. There is no history, no
presence and no resume: the peer does less than the gateway per message, on purpose
the least a Socket.IO chat does. One setting differs from python-socketio's defaults:
`async_handlers=False`, without which a client's messages may arrive out of order.

    .venv/bin/python -m bench.peer_socketio --port 9000 --redis-url redis://127.0.0.1:6390/0
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import socketio
from aiohttp import web


def create_app(redis_url: str) -> web.Application:
    """The aiohttp app: Socket.IO on /socket.io/ (websocket transport only), /healthz."""
    manager = socketio.AsyncRedisManager(redis_url)
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        client_manager=manager,
        transports=["websocket"],
        # One client's events handled one after the other, as the gateway does: with the
        # default (a task per event) two sends in flight can overtake each other, and the
        # bench saw messages delivered out of order.
        async_handlers=False,
        cors_allowed_origins="*",
        logger=False,
        engineio_logger=False,
    )
    names: dict[str, str] = {}  # sid -> the name given at join (the messages' `from`)

    @sio.on("join")
    async def join(sid: str, data: dict[str, Any]) -> dict[str, bool]:
        names[sid] = str(data.get("name", sid))
        await sio.enter_room(sid, str(data["room"]))
        return {"ok": True}

    @sio.on("send")
    async def send(sid: str, data: dict[str, Any]) -> dict[str, bool]:
        room = str(data["room"])
        message = {
            "room": room,
            "from": names.get(sid, sid),
            "text": data["text"],
            "ts": int(time.time() * 1000),
        }
        await sio.emit("msg", message, room=room)
        return {"ok": True}

    @sio.on("disconnect")
    async def disconnect(sid: str, *_: Any) -> None:
        names.pop(sid, None)

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    sio.attach(app)
    app.router.add_get("/healthz", healthz)
    return app


def main() -> None:
    """Serve one node until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    args = parser.parse_args()
    web.run_app(
        create_app(args.redis_url), host="127.0.0.1", port=args.port, print=None, access_log=None
    )


if __name__ == "__main__":
    main()

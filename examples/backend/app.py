"""An application's backend for chat-gateway: cookie logins, a word filter, an event log.

Its own code (no gateway import): users log in with a cookie, the gateway's hooks ask it,
its events land in SQLite once each. Needs the gateway's CHAT_BACKEND_SECRET."""

import argparse
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import time
from http.cookies import SimpleCookie
from typing import Any

from aiohttp import web

COOKIE = "example_session"
REPLAY_WINDOW = 300  # seconds: a request signed longer ago (or ahead) than this is refused
REFUSED_WORD = "spam"  # the publish hook refuses any message that holds it
STAFF_ROOM = "staff"  # the join hook lets only the name "admin" in
DB = web.AppKey("db", sqlite3.Connection)
SECRET = web.AppKey("secret", bytes)
GATEWAY_PAGE = web.AppKey("gateway_page", str)
LOGIN_PAGE = """<!doctype html><title>Log in</title><link rel="icon" href="data:,">
<form method="post" action="/login"><input name="name" maxlength="32" placeholder="your name"
autofocus> <button>Log in</button></form><p><a href="/events">What happened</a></p>"""
SCHEMA = """CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, type TEXT, ts INTEGER, event TEXT);"""


def signed_by_gateway(secret: bytes, headers: Any, body: bytes) -> bool:
    """True when X-Chat-Signature is the HMAC-SHA256 of "timestamp.body" under `secret`
    and X-Chat-Timestamp is within the replay window of now."""
    timestamp = headers.get("X-Chat-Timestamp", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > REPLAY_WINDOW:
        return False
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers.get("X-Chat-Signature", ""), "sha256=" + mac)


async def from_gateway(request: web.Request) -> dict[str, Any]:
    """The request's JSON body, once its signature is checked (401 otherwise)."""
    body = await request.read()
    if not signed_by_gateway(request.app[SECRET], request.headers, body):
        raise web.HTTPUnauthorized(text="not signed by the gateway, or signed too long ago")
    return json.loads(body)


def refuse(message: str) -> web.Response:
    """A hook's "no": the gateway shows `message` to the user."""
    return web.json_response({"message": message}, status=403)


async def connect_hook(request: web.Request) -> web.Response:
    """Who is this connection? The name of its session cookie, or nobody."""
    asked = await from_gateway(request)
    morsel = SimpleCookie(asked["headers"]["Cookie"] or "").get(COOKIE)  # null: none sent
    query = "SELECT name FROM sessions WHERE id = ?"
    row = request.app[DB].execute(query, (morsel.value if morsel else "",)).fetchone()
    if row is None:
        return refuse(f"log in first, at http://{request.host}/")
    if asked.get("name") and asked["name"].casefold() != row[0].casefold():
        return refuse(f"you are logged in as {row[0]}")
    return web.json_response({"name": row[0]})


async def join_hook(request: web.Request) -> web.Response:
    """May this name enter this room?"""
    asked = await from_gateway(request)
    if asked["room"] == STAFF_ROOM and asked["name"].casefold() != "admin":
        return refuse(f"{STAFF_ROOM} is for the staff")
    return web.json_response({})


async def publish_hook(request: web.Request) -> web.Response:
    """May this message go out? ({"text": ...} instead of {} would rewrite it.)"""
    asked = await from_gateway(request)
    if REFUSED_WORD in asked["text"].casefold():
        return refuse(f'"{REFUSED_WORD}" is not welcome here')
    return web.json_response({})


async def receive_events(request: web.Request) -> web.Response:
    """Store a batch, each event once: a retried batch is ignored by its ids. The 200
    goes out only after the commit, so an event is confirmed once it is stored."""
    batch = await from_gateway(request)
    rows = [(e["id"], e["type"], e["ts"], json.dumps(e)) for e in batch["events"]]
    with request.app[DB]:
        request.app[DB].executemany("INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?)", rows)
    return web.json_response({})


async def list_events(request: web.Request) -> web.Response:
    """GET /events: the newest 1000 stored events, in the order they arrived."""
    rows = request.app[DB].execute("SELECT event FROM events ORDER BY rowid DESC LIMIT 1000")
    return web.json_response({"events": [json.loads(e) for (e,) in reversed(rows.fetchall())]})


async def home(request: web.Request) -> web.Response:
    """The login form."""
    return web.Response(text=LOGIN_PAGE, content_type="text/html")


async def login(request: web.Request) -> web.Response:
    """Start a session for the name in the form, then go to the gateway's page. The
    cookie is host-wide, so the browser sends it to the gateway's /ws on another port."""
    name = str((await request.post()).get("name", "")).strip()
    if not 1 <= len(name) <= 32:
        raise web.HTTPBadRequest(text="a name is 1 to 32 characters")
    session = secrets.token_urlsafe(24)
    with request.app[DB]:
        request.app[DB].execute("INSERT INTO sessions VALUES (?, ?)", (session, name))
    response = web.Response(status=303, headers={"Location": request.app[GATEWAY_PAGE]})
    response.set_cookie(COOKIE, session, httponly=True, samesite="Lax", max_age=86_400)
    return response


def create_app(secret: str, db_path: str, gateway_page: str) -> web.Application:
    """The application: its routes, its SQLite database (closed at cleanup)."""
    app = web.Application()
    app[SECRET], app[GATEWAY_PAGE] = secret.encode(), gateway_page
    app[DB] = sqlite3.connect(db_path)
    app[DB].executescript(SCHEMA)

    async def close_db(app: web.Application) -> None:
        app[DB].close()

    app.on_cleanup.append(close_db)
    app.add_routes([web.get("/", home), web.post("/login", login), web.get("/events", list_events)])
    app.add_routes([web.post("/events", receive_events), web.post("/hooks/connect", connect_hook)])
    app.add_routes([web.post("/hooks/join", join_hook), web.post("/hooks/publish", publish_hook)])
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--db", default="example.sqlite3", help="the SQLite file")
    parser.add_argument("--gateway", default="http://127.0.0.1:8080/", help="its page")
    args = parser.parse_args()
    if not os.environ.get("CHAT_BACKEND_SECRET"):
        parser.error("set CHAT_BACKEND_SECRET: the gateway's --backend-secret")
    app = create_app(os.environ["CHAT_BACKEND_SECRET"], args.db, args.gateway)
    web.run_app(app, host="127.0.0.1", port=args.port)

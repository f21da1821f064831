"""`chat` for moderators and the moderated (issue 14), against a real gateway run with
--jwt-secret and --api-key: a moderator names a message by the number shown before it
and deletes it, kicks (and bans) a user; the kicked user's client is out of the room
and does not go back; deleted messages show as such, live, in history and in a resume's
replay; an operator's disconnect (4001) stops the client for good."""

from __future__ import annotations

import re
import uuid
from typing import Any

import aiohttp
from chat_helpers import API_KEY, JWT_SECRET, Observer, unique

from gateway.auth import mint

CLOCK = r"(\d{4}-\d\d-\d\d )?\d\d:\d\d"  # a local time, with the date when not today


def token(name: str, moderates: list[str] | None = None) -> str:
    return mint(JWT_SECRET, name, 600, moderates=moderates)


def env(name: str, moderates: list[str] | None = None) -> dict[str, str]:
    return {"CHAT_TOKEN": token(name, moderates)}


async def act(observer: Observer, **frame: Any) -> dict[str, Any]:
    """Send `frame` from a JSON observer; returns the server's answer to it."""
    ref = uuid.uuid4().hex
    await observer.ws.send_json(frame | {"ref": ref})
    return await observer.until(lambda f: f.get("ref") == ref)


async def test_a_moderator_deletes_a_message_and_kicks_a_user(moderated_gateway, chat_procs):
    """Three `chat` clients in a room, one of them its moderator: the moderator sees a
    number before each message and `/delete N` deletes that one (everyone then sees
    `[deleted by MOD]`); `/kick NAME 600` removes and bans a user, whose client says
    so, sends nothing to the room, is refused the room with the ban's end, and can
    /join another; a newcomer reads the tombstone in the room's history.

    Guards against: no way for a moderator to name a message, numbers shown to
    everyone, the deletion not shown (or the text shown again), the server's refusal of
    a non-moderator unseen, a kicked client still sending to the room or going back
    into it, and a ban shown without its end.
    """
    url, room, elsewhere = moderated_gateway.url, unique("team"), unique("other")
    mod, ann, bob, cat = unique("mod"), unique("ann"), unique("bob"), unique("cat")
    moderator = await chat_procs(url, "--room", room, env=env(mod, moderates=[room]))
    await moderator.expect(rf"^\* you are in {room}: ")
    anne = await chat_procs(url, "--room", room, env=env(ann))
    await anne.expect(rf"^\* you are in {room}: ")
    bobby = await chat_procs(url, "--room", room, env=env(bob))
    await bobby.expect(rf"^\* you are in {room}: ")
    await anne.expect(rf"^\* {bob} joined {room}$")

    await anne.write("a message to delete")
    await anne.write("a message to keep")
    line = await moderator.expect(rf"^#\d+ {ann}: a message to delete$")
    number = re.match(r"#(\d+) ", line)[1]  # type: ignore[index]
    await moderator.expect(rf"^#\d+ {ann}: a message to keep$")
    await bobby.expect(rf"^{ann}: a message to delete$")  # no number: not a moderator
    await moderator.write(f"/delete {number}")
    await moderator.expect(rf"^#{number} {ann}: \[deleted by {mod}\]$")
    await bobby.expect(rf"^{ann}: \[deleted by {mod}\]$")
    await anne.expect(rf"^{ann}: \[deleted by {mod}\]$")

    await anne.write(f"/kick {bob}", f"/delete {number}")  # not a moderator: refused
    await anne.expect_error(rf"^! no message #{number} in {room} \(numbers show in rooms your ")
    await anne.expect_error(rf"^! your token does not let you moderate {room}$")  # the server's
    await moderator.write(f"/kick {bob} 600")
    await moderator.expect(rf"^\* kicked {bob} from {room}, banned until {CLOCK}$")
    await bobby.expect(rf"^\* you were removed from {room} by {mod} until {CLOCK}$")
    await bobby.expect(r"^\* you are in no room now: /join ROOM to enter another$")
    await anne.expect(rf"^\* {bob} left {room}$")
    await bobby.write("still here?")
    await bobby.expect_error(rf"^! you are in no room \(removed from {room}\): /join ROOM$")
    await bobby.write(f"/join {room}")
    await bobby.expect_error(
        rf"^! you are banned from {room} until .+ \(ends {CLOCK} local time\)$"
    )
    await bobby.write(f"/join {elsewhere}")
    await bobby.expect(rf"^\* you are in {elsewhere}: {bob}$")

    newcomer = await chat_procs(url, "--room", room, env=env(cat))
    await newcomer.expect(rf"^\* last 2 messages in {room}:$")
    await newcomer.expect(rf"^{ann}: \[deleted by {mod}\]$")
    await newcomer.expect(rf"^{ann}: a message to keep$")
    await anne.write("/who")
    await anne.expect(rf"^\* members of {room}: ")
    assert bob not in anne.lines[-1]  # not back in the room

    for chat, refused in ((moderator, False), (anne, True), (bobby, True), (newcomer, False)):
        await chat.end_input()
        assert await chat.wait() == (1 if refused else 0), chat.stderr  # 1: a `!` line
    assert not [line for line in anne.lines + bobby.lines if "still here?" in line]
    assert not [line for line in newcomer.lines if "a message to delete" in line]
    assert not [line for line in anne.lines + bobby.lines if line.startswith("#")]


async def test_in_the_terminal_a_moderator_deletes_and_kicks_and_the_kicked_can_join_again(
    moderated_gateway, terminals, observe
):
    """The terminal client on both sides: the moderator's screen numbers the messages,
    `/delete 1` shows `[deleted by MOD]` on both screens; after `/kick` (no ban) the
    kicked user's screen says who removed them, the prompt says it is in no room, and
    `/join` of the same room works again.

    Guards against: the removal unseen in the terminal, a prompt still naming the room
    the user was removed from, and a kick without a ban refusing the room afterwards.
    """
    url, room = moderated_gateway.url, unique("term")
    mod, bob, wes = unique("mod"), unique("bob"), unique("wes")
    watcher = await observe(url, wes, room, token=token(wes))
    moderator = terminals(url, "--room", room, env=env(mod, moderates=[room]))
    await moderator.expect(rf"\* you are in {room}: ")
    kicked = terminals(url, "--room", room, env=env(bob))
    await kicked.expect(rf"\* you are in {room}: ")
    await moderator.expect(rf"\* {bob} joined {room}")

    await watcher.say("first words")
    await moderator.expect(rf"\d\d:\d\d #1 {wes}: first words")
    await kicked.expect(rf"\d\d:\d\d {wes}: first words")
    moderator.sendline("/delete 1")
    await moderator.expect(rf"\d\d:\d\d #1 {wes}: \[deleted by {mod}\]")
    await kicked.expect(rf"\d\d:\d\d {wes}: \[deleted by {mod}\]")

    moderator.sendline(f"/kick {bob}")
    await moderator.expect(rf"\* kicked {bob} from {room}")
    await kicked.expect(rf"\* you were removed from {room} by {mod}\s")
    await kicked.expect(r"\* you are in no room now: /join ROOM to enter another")
    await kicked.expect(r"\(no room\)>")
    kicked.sendline(f"/join {room}")
    await kicked.expect(rf"\* you are in {room}: ")
    await kicked.expect(rf"{room}>")
    await moderator.expect(rf"\* {bob} joined {room}")
    kicked.sendline("/quit")
    moderator.sendline("/quit")
    assert await kicked.exit_code() == 0
    assert await moderator.exit_code() == 0


async def test_a_deletion_while_away_shows_in_the_replay_of_the_resume(
    moderated_gateway, moderated_proxy, chat_procs, observe
):
    """A message sent and deleted while the client's connection is cut comes in the
    resume's replay as a tombstone: shown as `[deleted by MOD]`, never with its text.

    Guards against: a replayed tombstone shown as an empty message, or dropped (the
    gap then looks as if nothing had been said).
    """
    room, mod, ann = unique("away"), unique("mod"), unique("ann")
    moderator = await observe(moderated_gateway.url, mod, room, token=token(mod, [room]))
    chat = await chat_procs(moderated_proxy.url, "--room", room, env=env(ann))
    await chat.expect(rf"^\* you are in {room}: ")
    await moderator.say("before")
    await chat.expect(rf"^{mod}: before$")

    moderated_proxy.accepting = False
    moderated_proxy.cut()
    await chat.expect(r"^\* reconnecting\.\.\.$")
    ack = await moderator.say("said and deleted while you were away")
    assert (await act(moderator, type="delete", room=room, offset=ack["offset"]))["type"] == "ack"
    await moderator.say("after")
    moderated_proxy.accepting = True
    await chat.expect(r"^\* reconnected$")
    await chat.expect(rf"^{mod}: \[deleted by {mod}\]$")
    await chat.expect(rf"^{mod}: after$")
    await chat.end_input()
    assert await chat.wait() == 0, chat.stderr
    assert not [line for line in chat.lines if "while you were away" in line]


async def test_a_ban_met_at_a_reconnect_leaves_the_client_in_no_room_until_join(
    moderated_gateway, moderated_proxy, chat_procs, observe
):
    """Banned from the room while the connection was cut: the reconnect is refused
    that room, and the client says so (with the ban's end), stays up in no room and
    connects again into the room of the next /join.

    Guards against: the ban ending the client (as a fatal refusal), or a reconnect
    loop knocking on the banned room.
    """
    room, elsewhere, mod, ann = unique("ban"), unique("other"), unique("mod"), unique("ann")
    moderator = await observe(moderated_gateway.url, mod, room, token=token(mod, [room]))
    chat = await chat_procs(moderated_proxy.url, "--room", room, env=env(ann))
    await chat.expect(rf"^\* you are in {room}: ")
    await moderator.until(lambda f: f.get("type") == "presence" and f.get("name") == ann)

    moderated_proxy.accepting = False
    moderated_proxy.cut()
    await chat.expect(r"^\* reconnecting\.\.\.$")
    answer = await act(moderator, type="kick", room=room, name=ann, seconds=600)
    assert answer["type"] == "ack", answer
    moderated_proxy.accepting = True
    await chat.expect_error(rf"^! you are banned from {room} until .+ \(ends {CLOCK} local time\)$")
    await chat.expect(r"^\* disconnected, in no room: /join ROOM connects again$")
    await chat.write(f"/join {elsewhere}")
    await chat.expect(rf"^\* you are in {elsewhere}: {ann}$")
    await chat.end_input()
    assert await chat.wait() == 1, chat.stderr  # running on, but the ban was a `!` line


async def test_a_banned_first_room_ends_the_client_with_the_ban_and_its_end(
    moderated_gateway, chat_procs, observe
):
    """Guards against: a client started into a room it is banned from hanging, exiting
    0, or not saying until when."""
    room, mod, ann = unique("ban"), unique("mod"), unique("ann")
    moderator = await observe(moderated_gateway.url, mod, room, token=token(mod, [room]))
    answer = await act(moderator, type="kick", room=room, name=ann, seconds=600)
    assert answer["type"] == "ack", answer
    chat = await chat_procs(moderated_gateway.url, "--room", room, env=env(ann))
    await chat.end_input()
    assert await chat.wait() == 1
    ban = rf"you are banned from {room} until .+ \(ends {CLOCK} local time\)"
    assert re.search(ban, chat.stderr), chat.stderr


async def disconnect(port: int, name: str) -> None:
    """The operator's `POST /api/users/{name}/disconnect`."""
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{port}/api/users/{name}/disconnect"
        async with http.post(url, headers={"Authorization": f"Bearer {API_KEY}"}) as reply:
            assert reply.status == 202, await reply.text()


async def test_an_operator_disconnect_stops_the_pipe_client_without_reconnecting(
    moderated_gateway, chat_procs, observe
):
    """Close 4001: the client says why and exits 1 with its input still open.

    Guards against: 4001 taken as a drop (the client reconnects, and the operator's
    disconnect does nothing), or a silent exit.
    """
    room, ann, wes = unique("op"), unique("ann"), unique("wes")
    watcher = await observe(moderated_gateway.url, wes, room, token=token(wes))
    chat = await chat_procs(moderated_gateway.url, "--room", room, env=env(ann))
    await chat.expect(rf"^\* you are in {room}: ")
    await disconnect(moderated_gateway.port, ann)
    await chat.expect_error(r"^! disconnected by an operator; not reconnecting$")
    assert await chat.wait() == 1
    assert not [line for line in chat.lines if "reconnect" in line and not line.startswith("!")]
    await watcher.until(lambda f: f.get("type") == "presence" and f.get("event") == "leave")


async def test_an_operator_disconnect_ends_the_terminal_client(moderated_gateway, terminals):
    """Guards against: the terminal client reconnecting after 4001, or leaving the
    user at a dead prompt without saying why."""
    room, ann = unique("op"), unique("ann")
    term = terminals(moderated_gateway.url, "--room", room, env=env(ann))
    await term.expect(rf"\* you are in {room}: ")
    await disconnect(moderated_gateway.port, ann)
    await term.expect(r"! disconnected by an operator; not reconnecting")
    assert await term.exit_code() == 1
    assert "reconnecting..." not in term.text

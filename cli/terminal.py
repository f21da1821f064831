"""The terminal UI: an input line (history, editing) with incoming lines printed above it."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from prompt_toolkit import PromptSession
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.patch_stdout import patch_stdout
from prompt_toolkit.shortcuts import print_formatted_text
from prompt_toolkit.styles import Style

from cli.client import ChatClient, ClientConfig, describe
from cli.commands import run_line
from cli.connection import ConnectFailed, NameRejected, Rejected
from cli.events import Status
from cli.render import STYLE, Fragments, render
from cli.visible import visible

EXIT_INTERRUPTED = 130
QUIT_DRAIN_SECONDS = 2.0
PENDING_SHOWN = 5  # pending messages listed above the input line at most


class TerminalUI:
    """One terminal session: a name (asked, or the token's), then chat until /quit,
    Ctrl-D or a fatal close.

    Each message shows once, as the server's copy with its time: an entered line is
    erased from the screen, and a message not acked yet is listed as pending just above
    the input line (part of the prompt, redrawn with it) until its copy arrives.
    """

    def __init__(self, config: ClientConfig) -> None:
        self._config = config
        self._style = Style.from_dict(STYLE)
        self._input: PromptSession[str] = PromptSession(
            history=InMemoryHistory(), erase_when_done=True, style=self._style
        )

    async def run(self) -> int:
        """Run until the user leaves; returns the exit code."""
        with patch_stdout(raw=True):
            client = await self._connect()
            if isinstance(client, int):
                return client
            return await self._chat(client)

    def _error(self, message: str) -> None:
        line = [("class:error", f"! {visible(message)}")]
        print_formatted_text(FormattedText(line), style=self._style)

    async def _connect(self) -> ChatClient | int:
        """A started client, asking for a name until one is taken; or an exit code.

        With a token nothing is asked: the name is the token's, shown once welcomed.
        """
        name, token = self._config.name.strip(), self._config.token
        asker: PromptSession[str] = PromptSession()
        while True:
            while not name and not token:
                try:
                    name = (await asker.prompt_async("Your name: ")).strip()
                except EOFError:
                    return 0
                except KeyboardInterrupt:
                    return EXIT_INTERRUPTED
            client = ChatClient(replace(self._config, name=name))
            try:
                await client.start()
            except NameRejected as exc:
                self._error(exc.message)
                if token:  # another name would not match the token
                    return 1
                name = ""
                continue
            except (Rejected, ConnectFailed) as exc:
                self._error(str(exc))
                return 1
            if token:
                client.notify(Status(f"signed in as {client.name}"))
            return client

    async def _chat(self, client: ChatClient) -> int:
        printer = asyncio.create_task(self._print_events(client), name="chat-print")
        reader = asyncio.create_task(self._read_input(client), name="chat-input")
        code = 0
        try:
            done, _ = await asyncio.wait({printer, reader}, return_when=asyncio.FIRST_COMPLETED)
            if reader in done:
                code = reader.result()
                if not await client.drain(QUIT_DRAIN_SECONDS):
                    self._error(f"not answered, dropped: {describe(client.unanswered)}")
        finally:
            reader.cancel()
            await asyncio.wait({reader})
            await client.close()
            await printer
        return code or client.exit_code

    async def _read_input(self, client: ChatClient) -> int:
        """Read and run input lines; returns the exit code once the user leaves."""

        def prompt() -> FormattedText:
            return FormattedText(prompt_fragments(client))

        while True:
            try:
                line = await self._input.prompt_async(prompt)
            except EOFError:
                return 0
            except KeyboardInterrupt:
                return EXIT_INTERRUPTED
            if run_line(client, line):
                return 0

    async def _print_events(self, client: ChatClient) -> None:
        async for event in client.events():
            for line in render(event, clock=True):
                print_formatted_text(FormattedText(line), style=self._style)


def prompt_fragments(client: ChatClient) -> Fragments:
    """The input line's prompt: the pending messages, one a line, then the room."""
    pending = client.pending
    lines: Fragments = []
    if len(pending) > PENDING_SHOWN:
        lines.append(("class:pending", f"(sending) {len(pending) - PENDING_SHOWN} earlier ones\n"))
    lines.extend(
        ("class:pending", f"(sending) {visible(text)}\n") for text in pending[-PENDING_SHOWN:]
    )
    room = client.room if client.present else "(no room)"
    room = room if client.connected else f"{room} (offline)"
    return [*lines, ("", f"{room}> ")]

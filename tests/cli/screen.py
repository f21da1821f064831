"""A small terminal emulator for the tests: what a person would see, not the bytes.

prompt_toolkit draws the input line, then erases and redraws it with cursor moves, so
text that was drawn may no longer be on the screen. `Screen` applies the output the way
a terminal does, for the sequences prompt_toolkit sends to an xterm without cursor
position reports: printable text, CR, LF, BS, and CSI cursor moves and erases (A B C D
G H J K); other sequences (styles, modes, titles) change nothing that is read here.
Lines scrolled off the top are kept, so `lines()` is the whole session.
"""

from __future__ import annotations

import re

_SEQUENCE = re.compile(
    r"\x1b\[(?P<params>[0-?]*)[ -/]*(?P<final>[@-~])"  # CSI
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC
    r"|\x1b[@-Z\\-_]"  # other escapes
    r"|(?P<control>[\x00-\x1f])"
)


class Screen:
    """A `rows` x `cols` screen with its scrollback; `feed` it the program's output."""

    def __init__(self, rows: int, cols: int) -> None:
        self.rows, self.cols = rows, cols
        self.scrollback: list[str] = []
        self._grid = [[" "] * cols for _ in range(rows)]
        self.row = self.col = 0
        self._partial = ""  # an escape sequence cut by the end of the last chunk

    def feed(self, text: str) -> None:
        """Apply `text` (escape sequences included) as a terminal would."""
        text, self._partial = self._partial + text, ""
        last = text.rfind("\x1b")
        if last != -1 and len(text) - last < 64:
            ending = _SEQUENCE.match(text, last)
            if ending is None or ending["control"] is not None:  # the rest comes later
                text, self._partial = text[:last], text[last:]
        position = 0
        for match in _SEQUENCE.finditer(text):
            self._write(text[position : match.start()])
            position = match.end()
            if match["control"] is not None:
                self._control(match["control"])
            elif match["final"] is not None:
                self._csi(match["params"], match["final"])
        self._write(text[position:])

    def lines(self) -> list[str]:
        """Every line of the session (scrollback, then the screen), without trailing
        blanks, and without the blank lines below the last written one."""
        shown = [*self.scrollback, *("".join(row).rstrip() for row in self._grid)]
        while shown and not shown[-1]:
            shown.pop()
        return shown

    def _write(self, text: str) -> None:
        for char in text:
            if self.col >= self.cols:  # autowrap
                self.col = 0
                self._line_feed()
            self._grid[self.row][self.col] = char
            self.col += 1

    def _control(self, char: str) -> None:
        if char == "\r":
            self.col = 0
        elif char == "\n":
            self._line_feed()
        elif char == "\b":
            self.col = max(0, self.col - 1)
        elif char == "\t":
            self.col = min(self.cols - 1, (self.col // 8 + 1) * 8)

    def _line_feed(self) -> None:
        if self.row < self.rows - 1:
            self.row += 1
            return
        self.scrollback.append("".join(self._grid.pop(0)).rstrip())
        self._grid.append([" "] * self.cols)

    def _csi(self, params: str, final: str) -> None:
        if params.startswith("?"):
            return  # private modes: cursor visibility, bracketed paste, autowrap
        numbers = [int(n) if n.isdigit() else 0 for n in params.split(";")] if params else []
        count = max(1, numbers[0]) if numbers else 1
        if final == "A":
            self.row = max(0, self.row - count)
        elif final == "B":
            self.row = min(self.rows - 1, self.row + count)
        elif final == "C":
            self.col = min(self.cols - 1, self.col + count)
        elif final == "D":
            self.col = max(0, min(self.col, self.cols - 1) - count)
        elif final == "G":
            self.col = min(self.cols - 1, count - 1)
        elif final in "Hf":
            row, col = [*numbers, 1, 1][:2]
            self.row, self.col = min(self.rows, max(1, row)) - 1, min(self.cols, max(1, col)) - 1
        elif final == "J":
            self._erase_display(numbers[0] if numbers else 0)
        elif final == "K":
            self._erase_line(numbers[0] if numbers else 0)

    def _erase_display(self, mode: int) -> None:
        if mode == 0:
            self._erase_line(0)
            for row in range(self.row + 1, self.rows):
                self._grid[row] = [" "] * self.cols
        elif mode == 1:
            self._erase_line(1)
            for row in range(self.row):
                self._grid[row] = [" "] * self.cols
        else:
            self._grid = [[" "] * self.cols for _ in range(self.rows)]

    def _erase_line(self, mode: int) -> None:
        line = self._grid[self.row]
        start, end = {0: (self.col, self.cols), 1: (0, self.col + 1)}.get(mode, (0, self.cols))
        line[start:end] = [" "] * (min(end, self.cols) - start)

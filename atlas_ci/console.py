"""Human log lines on stderr: one line each, secrets cut, nothing a CI runner would parse."""

from __future__ import annotations

import sys
from typing import TextIO

from atlas_ci.redaction import redact


def one_line(text: str) -> str:
    """Collapse newlines and control characters so a line cannot smuggle a second one."""
    # Secrets first: blanking a character of one would leave the rest unrecognised.
    text = redact(text)
    cleaned = "".join(ch if ch.isprintable() else " " for ch in text)
    return " ".join(cleaned.split()) if "\n" in text or "\r" in text else cleaned


class Console:
    """Where the tool's progress goes: stderr by default; ``debug`` lines only on request."""

    def __init__(self, stream: TextIO | None = None, *, debug: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.debug_enabled = debug

    @property
    def interactive(self) -> bool:
        isatty = getattr(self.stream, "isatty", None)
        return bool(isatty and isatty())

    def info(self, line: str) -> None:
        self._write(one_line(line))

    def warn(self, line: str) -> None:
        self._write("warning: " + one_line(line))

    def error(self, line: str) -> None:
        self._write("error: " + one_line(line))

    def debug(self, line: str) -> None:
        if self.debug_enabled:
            self._write("debug: " + one_line(line))

    def _write(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

"""The CLI's consoles and shared renderables.

Both consoles print text literally (markup and emoji codes off): what they print is mostly
user text (spec keys, labels, file contents, error messages), and rich would read `[lanes.x]`
as markup and eat it, or fail on `[/x]`. Styles come from Text objects instead. Off a
terminal, a line of text is never wrapped.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.text import Text


class TextConsole(Console):
    """A console whose lines of text stay whole when it is not a terminal (a pipe, a file,
    CI): a reader (grep, a log) must not get a line cut at 80 columns. Tables and other
    renderables still fit the width, their notes included."""

    def print(self, *objects: Any, soft_wrap: bool | None = None, **kwargs: Any) -> None:
        if soft_wrap is None:
            plain = all(isinstance(o, str | Text) for o in objects)
            soft_wrap = plain and not self.is_terminal
        super().print(*objects, soft_wrap=soft_wrap, **kwargs)


console = TextConsole(markup=False, emoji=False)
err_console = TextConsole(stderr=True, markup=False, emoji=False)


def tagged(tag: str, style: str, text: str) -> Text:
    """`tag` in `style`, then `text` as it is."""
    return Text.assemble((tag, style), " ", text)

"""The CLI's consoles and shared renderables.

Both consoles print text literally (markup and emoji codes off): what they print is mostly
user text (spec keys, labels, file contents, error messages), and rich would read `[lanes.x]`
as markup and eat it, or fail on `[/x]`. Styles come from Text objects instead.
"""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

console = Console(markup=False, emoji=False)
err_console = Console(stderr=True, markup=False, emoji=False)


def tagged(tag: str, style: str, text: str) -> Text:
    """`tag` in `style`, then `text` as it is."""
    return Text.assemble((tag, style), " ", text)

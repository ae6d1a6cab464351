"""The CLI's consoles and shared renderables.

Both consoles print text literally (markup and emoji codes off): what they print is mostly
user text (spec keys, labels, file contents, error messages), and rich would read `[lanes.x]`
as markup and eat it, or fail on `[/x]`. Styles come from Text objects instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    import pandas as pd

console = Console(markup=False, emoji=False)
err_console = Console(stderr=True, markup=False, emoji=False)


def tagged(tag: str, style: str, text: str) -> Text:
    """`tag` in `style`, then `text` as it is."""
    return Text.assemble((tag, style), " ", text)


def frame_table(frame: pd.DataFrame, title: str) -> Table:
    """A rich table of `frame`; columns blank in every row are left out, to fit a terminal."""
    import pandas as pd

    table = Table(title=title)
    frame = frame.loc[:, frame.notna().any() | frame.empty]
    for column in frame.columns:
        table.add_column(str(column), no_wrap=column == "id")
    for row in frame.itertuples(index=False):
        table.add_row(
            *("" if pd.isna(v) else f"{v:.4f}" if isinstance(v, float) else str(v) for v in row)
        )
    return table

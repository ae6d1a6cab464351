"""The one exception type for user mistakes.

A `UserError` is caught once, at the command-line entry point, and printed as a single line
that names the file, the field, what was found and what is allowed. Anything else that
escapes is a bug in jepardy and keeps its traceback.
"""


class UserError(Exception):
    """A mistake in the user's input (spec, data, database URL, command line)."""


def clipped_repr(value: object, limit: int = 40) -> str:
    """repr(value) cut to `limit` characters: an error names the value a user wrote, and a
    spec's value can be megabytes long (an error is one short line)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."

"""The one exception type for user mistakes.

A `UserError` is caught once, at the command-line entry point, and printed as a single line
that names the file, the field, what was found and what is allowed. Anything else that
escapes is a bug in jepardy and keeps its traceback.
"""


class UserError(Exception):
    """A mistake in the user's input (spec, data, database URL, command line)."""

"""The one exception type a user is meant to read.

Anything the user can fix (a path, a column, a label, a key) raises `InputError`; the CLI prints its message
and exits with status 2 instead of showing a traceback from deep inside a library.
"""


class InputError(Exception):
    """A problem with the user's files or settings, explained in words the user can act on."""

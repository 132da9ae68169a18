"""The exception types a user is meant to read.

Anything the user can fix (a path, a column, a label, a key) raises `InputError`; the CLI prints its message
and exits with status 2 instead of showing a traceback from deep inside a library. A fault met while training
(a loss that stopped being finite) raises `TrainingError`: printed the same way, with exit status 1.
"""


class InputError(Exception):
    """A problem with the user's files or settings, explained in words the user can act on."""


class TrainingError(Exception):
    """Training cannot go on (e.g. the loss is NaN): what happened, where, and what to try."""


def row_list(lines: list[int], unit: str = "line", show: int = 10) -> str:
    """Where in a file a problem is, for a message: "lines 3, 7 and 12", the first `show` of them."""
    shown = ", ".join(str(n) for n in lines[:show])
    return f"{unit}{'s' if len(lines) > 1 else ''} {shown}{' and more' if len(lines) > show else ''}"

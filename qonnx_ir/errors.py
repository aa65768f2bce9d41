"""The one exception type that means "the user's input is bad".

The CLI turns it into a one-line message and exit code 2; anything else is a bug
and keeps its traceback.
"""


class QonnxError(Exception):
    """Bad input: an unsupported op, a malformed model, an impossible option.

    The message must fit on one line and name the node (if any), the problem and
    what to do about it.
    """

    def __init__(self, message: str, node: str | None = None):
        self.node = node
        super().__init__(f"node '{node}': {message}" if node else message)


class CheckFailed(Exception):
    """A check ran and found a mismatch (CLI exit code 1)."""

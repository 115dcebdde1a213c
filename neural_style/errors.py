"""The one exception type for problems the user can fix.

Anything raised as `UserError` reaches the terminal as a single line,
`error: <message>`, and the process exits with status 2 (see train.py). The
message names the file or setting at fault and says how to fix it.
"""


class UserError(Exception):
    """Bad input: a missing or corrupt file, an unusable image, a bad setting."""

    exit_code = 2

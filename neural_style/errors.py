"""The one exception type for problems the user can fix, and how its fixes are worded.

Anything raised as `UserError` reaches the terminal as a single line,
`error: <message>`, and the process exits with status 2 (see cli_flags.run_command). The
message names the file or setting at fault and says how to fix it.
"""


class UserError(Exception):
    """Bad input: a missing or corrupt file, an unusable image, a bad setting."""

    exit_code = 2


def setting_fix(setting: str, value: str = "PATH") -> str:
    """How a message tells the user to change a setting: `set CONTENT_IMAGE in settings.py
    or pass --content_image=PATH`."""
    return f"set {setting.upper()} in settings.py or pass --{setting.lower()}={value}"


def one_line(text: object) -> str:
    """`text` (an exception, say) on one line, its runs of white space folded."""
    return " ".join(str(text).split()) or type(text).__name__

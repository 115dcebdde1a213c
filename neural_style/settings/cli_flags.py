"""absl flags generated from settings.py, for train.py only; the library never reads flags.

Every UPPER_CASE constant of the settings module becomes a flag of the same name in lower
case. The constant supplies the default, the comment line(s) directly above it the help
text, and the Settings field's type annotation (else the default's type) the flag's type.
Layer lists become string flags written `relu1_1:0.2,relu2_1:0.2`.

    cli_flags.define_flags(settings)
    app.run(main, flags_parser=cli_flags.parse_flags)
    ...
    run_settings = Settings.from_flag_values(flags.FLAGS)  # inside main
"""

import ast
import contextlib
import inspect
import io
import os
import re
import signal
import sys
import tokenize
import traceback
import types
import typing

from absl import app, flags

from neural_style import stopping
from neural_style.errors import UserError, one_line
from neural_style.settings import gatys as config
from neural_style.settings import values as values

# Flags defined in define_flags belong to its caller (train.py), so `--help`, which lists
# the main module's flags, shows them.
flags.disclaim_key_flags()

_CONSTANT = re.compile(r"[A-Z][A-Z0-9_]*")

_DEFINERS = {
    bool: flags.DEFINE_boolean,
    int: flags.DEFINE_integer,
    float: flags.DEFINE_float,
    str: flags.DEFINE_string,
}


def setting_names(settings_module: types.ModuleType) -> list[str]:
    """The module's UPPER_CASE constants, in the order the module defines them."""
    return [
        name
        for name, value in vars(settings_module).items()
        if _CONSTANT.fullmatch(name)
        and not isinstance(value, types.ModuleType)
        and not callable(value)
    ]


def setting_comments(settings_module: types.ModuleType) -> dict[str, str]:
    """Maps each top-level assigned name to the comment lines directly above it, joined.

    Empty when the module's source cannot be read (a bare .pyc, say).
    """
    try:
        source = inspect.getsource(settings_module)
    except (OSError, TypeError):
        return {}
    comment_lines = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        # Whole-line comments only: a comment after code explains that line, not the next.
        if token.type == tokenize.COMMENT and token.line.lstrip().startswith("#"):
            comment_lines[token.start[0]] = token.string.lstrip("#").strip()
    comments = {}
    for statement in ast.parse(source).body:
        if isinstance(statement, ast.Assign):
            targets = statement.targets
        elif isinstance(statement, ast.AnnAssign):
            targets = [statement.target]
        else:
            continue
        above = []
        line = statement.lineno - 1
        while line in comment_lines:
            above.insert(0, comment_lines[line])
            line -= 1
        for target in targets:
            if isinstance(target, ast.Name):
                comments[target.id] = " ".join(text for text in above if text)
    return comments


def define_flags(
    settings_module: types.ModuleType, flag_values: flags.FlagValues = flags.FLAGS
) -> None:
    """Defines one flag per UPPER_CASE constant of `settings_module` on `flag_values`.

    Call it once per FlagValues (a second call on the same one is a duplicate definition).

    Raises:
      UserError: a constant's value cannot be a flag's default (e.g. TRAIN_STEPS = 2.5).
    """
    hints = typing.get_type_hints(config.Settings)
    comments = setting_comments(settings_module)
    where = values.module_label(settings_module)
    for setting in setting_names(settings_module):
        name = setting.lower()
        default = getattr(settings_module, setting)
        help_text = comments.get(setting) or f"{setting} in {where}."
        if name in hints:
            kind = hints[name]
        elif isinstance(default, (list, tuple)):
            kind = values.LayerWeights
        else:
            kind = type(default)
        try:
            if kind == values.LayerWeights:
                pairs = values.as_layer_weights(default, setting)
                flags.DEFINE_string(
                    name,
                    values.format_layer_weights(pairs),
                    help_text,
                    flag_values=flag_values,
                )
            elif kind in values.LIST_ITEM_TYPES:
                items = values.as_list(default, setting, values.LIST_ITEM_TYPES[kind])
                flags.DEFINE_string(
                    name, ",".join(str(item) for item in items), help_text, flag_values=flag_values
                )
            elif kind in _DEFINERS:
                _DEFINERS[kind](name, default, help_text, flag_values=flag_values)
            else:
                raise UserError(
                    f"{setting} in {where} is a {type(default).__name__}; a setting must be "
                    "a bool, int, float, string or a list of (layer, weight) pairs"
                )
        except flags.IllegalFlagValueError as error:
            raise UserError(f"{setting} in {where} cannot be --{name}'s default: {error}") from None


def parse_flags(argv: list[str], flag_values: flags.FlagValues = flags.FLAGS) -> list[str]:
    """Parses `argv` like absl, for `app.run(main, flags_parser=parse_flags)`.

    A bad flag value, an unknown flag or a stray argument prints one line to stderr,
    `error: <message>; see python train.py --helpfull`, and exits with status 2.
    """
    try:
        remaining = flag_values(argv)
    except flags.Error as error:
        _usage_error(str(error))
    except SystemExit as exit_request:
        # absl's --help and --helpfull print the usage and exit 1; asking for help is a success.
        if exit_request.code == 1:
            sys.exit(0)
        raise
    if len(remaining) > 1:
        _usage_error(
            f"unexpected argument {remaining[1]!r}; settings are given as flags, "
            "e.g. --content_image=photo.jpg"
        )
    return remaining


def _usage_error(message: str) -> typing.NoReturn:
    line = " ".join(message.split())
    command = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "train.py"
    print(f"error: {line}; see python {command} --helpfull", file=sys.stderr)
    sys.exit(UserError.exit_code)


class _ClosedPipeSafe(io.TextIOBase):
    """The terminal stream, such that a closed reader (`| head`, a dead `tee`) ends only
    the printing, never the run: after the first broken pipe, output goes nowhere."""

    def __init__(self, stream: typing.TextIO):
        self._stream = stream
        self._closed_pipe = False

    def write(self, text: str) -> int:
        if not self._closed_pipe:
            try:
                self._stream.write(text)
            except (BrokenPipeError, ValueError):
                self._drop_output()
        return len(text)

    def flush(self) -> None:
        if not self._closed_pipe:
            try:
                self._stream.flush()
            except (BrokenPipeError, ValueError):
                self._drop_output()

    def _drop_output(self) -> None:
        self._closed_pipe = True
        # Python flushes stdout once more at exit; pointing it at /dev/null keeps that quiet.
        with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)

    def fileno(self) -> int:
        return self._stream.fileno()

    def isatty(self) -> bool:
        return not self._closed_pipe and self._stream.isatty()


def settings_beside(script: str) -> str:
    """The settings file a command reads: settings.py in the folder of `script`."""
    return os.path.join(os.path.dirname(script), "settings.py")


def load_settings(path: str) -> types.ModuleType:
    """The settings file at `path`, run as the module `settings`.

    Raises:
      UserError: one line naming the file (and the line at fault, if any) and the fix,
        when the file is missing or unreadable, is not valid Python, or fails as it runs.
    """
    name = os.path.basename(path)
    restore = f"or restore the shipped file with `git checkout {name}`"
    if not os.path.isfile(path):
        folder = os.path.dirname(os.path.abspath(path))
        missing = "not a file" if os.path.exists(path) else "not found"
        raise UserError(
            f"{name}: {missing} in {folder}, and every setting's default is read from it; "
            f"restore it with `git checkout {name}` (or copy it from the repository)"
        )
    try:
        with open(path, "rb") as file:
            source = file.read()
    except OSError as error:
        raise UserError(
            f"{name}: cannot be read ({error.strerror or one_line(error)}); check its "
            f"permissions, {restore}"
        ) from None
    module = types.ModuleType("settings")
    module.__file__ = path
    try:
        code = compile(source, path, "exec")
    except SyntaxError as error:
        where = _file_and_line(path, error.lineno)
        text = f" in `{_shortened(error.text)}`" if (error.text or "").strip() else ""
        fix = "fix that line" if error.lineno else "fix it"
        raise UserError(
            f"{where}: {error.msg}{text} (Python cannot read the file); {fix}, {restore}"
        ) from None
    except ValueError as error:  # a NUL byte, say
        raise UserError(f"{name}: {one_line(error)}; {restore.removeprefix('or ')}") from None
    try:
        exec(code, vars(module))  # as `import settings` would, without the module search
    except Exception as error:
        frames = [
            frame
            for frame in traceback.extract_tb(error.__traceback__)
            if os.path.abspath(frame.filename) == os.path.abspath(path)
        ]
        where = _file_and_line(path, frames[-1].lineno if frames else None)
        raise UserError(
            f"{where}: {type(error).__name__}: {one_line(error)} (the file runs as Python, "
            f"so every value must work as written); fix that line, {restore}"
        ) from None
    sys.modules["settings"] = module
    return module


def _file_and_line(path: str, line: int | None) -> str:
    return f"{os.path.basename(path)} line {line}" if line else os.path.basename(path)


def _shortened(code: str | None, limit: int = 60) -> str:
    text = one_line(code or "")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def run_command(
    settings_module: types.ModuleType | str,
    action: typing.Callable[[flags.FlagValues], None],
) -> typing.NoReturn:
    """The whole life of a command such as train.py: flags from `settings_module` (a
    module, or the path of the settings file to read with load_settings), then
    `action(flags.FLAGS)`. A UserError anywhere prints one `error: ...` line and exits 2.
    Ctrl-C, SIGTERM and SIGHUP stop the run as neural_style.stopping describes, print one
    line and exit 130, 143 or 129, whenever they come (while the flags are read too); no
    traceback either way. A closed stdout stops only the printing."""
    # Outside the blocks where a run defers it (its steps and saves), a stop ends the
    # command at once, in one line: raising it there could surface inside an import of a
    # C extension (numpy's, TensorFlow's), which turns it into a traceback.
    stopping.install(exit_at_once=True)
    sys.stdout = _ClosedPipeSafe(sys.stdout)

    def main(argv: list[str]) -> int:
        del argv  # parse_flags has already rejected stray arguments
        action(flags.FLAGS)
        return 0

    try:
        if isinstance(settings_module, str):
            settings_module = load_settings(settings_module)
        define_flags(settings_module)
        app.run(main, flags_parser=parse_flags)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(UserError.exit_code)
    except KeyboardInterrupt as stop:
        number = getattr(stop, "signal_number", signal.SIGINT)
        print(stopping.stopped_line(number), file=sys.stderr)
        sys.exit(128 + number)
    sys.exit(0)

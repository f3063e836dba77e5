"""Errors of the host side that every layer raises (one line each, naming the setting)."""


class ConfigError(ValueError):
    """A bad setting: one line that starts with the argument's name and says how to fix it.

    ``argument`` is the library argument's name (``strengths``, ``mask``, ``out``) or None; the
    command line maps it to its flag (``--strength``, ``--mask``, ``--out``).
    """

    def __init__(self, message: str, argument: str | None = None):
        super().__init__(message)
        self.argument = argument

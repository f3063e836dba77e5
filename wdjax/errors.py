"""Errors of bad input that every layer raises: one line, naming the argument and the fix."""

__all__ = ["ConfigError", "ConfigTypeError"]


class ConfigError(ValueError):
    """A bad argument or setting; one line that names it and says how to fix it.

    ``argument`` is the name the caller typed (a function's parameter, or a
    :class:`wdjax.SweepConfig` / ``sweep()`` field such as ``strengths``, ``mask``, ``out``); the
    message of an error raised by :func:`wdjax.sweep` and the builder starts with ``argument:``.
    The command line alone turns that name into its flag (:func:`wdjax.run.cli.error_line`).
    """

    def __init__(self, message: str = "", argument: str | None = None):
        super().__init__(message)
        self.argument = argument

    def __reduce__(self):  # picklable with its argument (multi-process runs, subprocesses)
        return type(self), (str(self), self.argument)


class ConfigTypeError(ConfigError, TypeError):
    """A :class:`ConfigError` where the value has the wrong type (also a ``TypeError``)."""


def named(argument: str, message: str, type_error: bool = False) -> ConfigError:
    """``ConfigError(f"{argument}: {message}", argument=argument)``."""
    cls = ConfigTypeError if type_error else ConfigError
    return cls(f"{argument}: {message}", argument=argument)

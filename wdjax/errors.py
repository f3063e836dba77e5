"""Errors of the host side that every layer raises (one line each, naming the setting)."""


class ConfigError(ValueError):
    """A bad setting; the message starts with its flag and says how to fix it (one line)."""

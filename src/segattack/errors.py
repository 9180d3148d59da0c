"""Errors that carry a one-line message for users (the entry points print them without a traceback)."""


class SegattackError(Exception):
    """Base class: a user-facing problem (bad input, bad config), not a bug."""


class DataError(SegattackError):
    """A data file or folder is missing, unreadable or inconsistent; the message names it."""


class ConfigError(SegattackError):
    """A config value is out of range; the message names the key and the allowed values."""


class WeightsError(SegattackError):
    """A weights or perturbation file is missing, truncated or does not fit."""

"""Configuration errors."""


class ConfigError(ValueError):
    """Raised when configuration files or environment overrides are invalid.

    The message names the offending key (dotted path) and what was wrong with it.
    """

"""Typed configuration for recpipe.

Offers :class:`Settings` (the one settings object) and :func:`load_settings`, which reads
``conf/base.yaml``, overlays ``conf/<env>.yaml`` and then ``RECPIPE_*`` environment variables.
Nothing is loaded at import time.
"""

from conf.errors import ConfigError
from conf.loader import load_settings
from conf.settings import Settings

__all__ = ["ConfigError", "Settings", "load_settings"]

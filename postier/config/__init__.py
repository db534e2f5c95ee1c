"""Configuration: `load(path) -> Settings`; errors name the key."""

from postier.config.load import ConfigError, load
from postier.config.schema import Settings

__all__ = ["ConfigError", "Settings", "load"]

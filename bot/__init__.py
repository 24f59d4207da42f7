"""Familiar's Telegram and console channels, the daemon's composition root and its CLI."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("familiar")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

"""Propylon: a self-hosted production layer for AI applications."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("propylon")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"

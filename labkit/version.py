"""labkit's version, on the base floor so any module may name it (`labkit.__version__` is the same string).

Example: `from labkit.version import __version__` -> "0.1.0" (kept equal to pyproject.toml's version by a test).
"""

__version__ = "0.1.0"

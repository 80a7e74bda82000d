"""genrec's version, in a module that imports nothing, so every layer can read it without importing the package
root (which the layering test forbids below the CLI)."""

__version__ = "0.1.0"

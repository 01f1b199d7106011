"""alm: a small-language-model workbench."""

__version__ = "0.1.0"

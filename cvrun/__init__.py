"""cvrun: a command-line experiment runner for image classification."""

__version__ = "0.1.0"

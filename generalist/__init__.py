"""generalist: distil one Gato-style transformer agent from specialist experts."""

__version__ = "0.1.0"

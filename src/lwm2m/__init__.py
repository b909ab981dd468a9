"""OMA LightweightM2M (1.0, 1.1, 1.2) for Python."""

__version__ = "0.1.0"

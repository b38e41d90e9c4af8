"""infoflow: information flow through U-Nets while they train (after Lee & Bajic, ISBI 2021)."""

__version__ = "0.1.0"

"""minirun: a small, fast container runtime on kernel overlayfs that shows
exactly what a run wrote."""

__version__ = "0.1.0"

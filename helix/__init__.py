"""Helix: an event-sourced control plane for AI development work."""

__version__ = "0.1.0"

"""Reverse Shell Responder: contains GKE pods named by Security Command Center Reverse Shell findings."""

__version__ = "0.1.0"

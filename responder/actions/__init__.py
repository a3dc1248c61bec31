"""Containment and evidence actions, one module each, registered explicitly in :mod:`responder.actions.registry`."""

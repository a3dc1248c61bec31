"""Adapters: the only code that imports google-cloud-*, google-auth and kubernetes; each implements a port."""

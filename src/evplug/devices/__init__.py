"""Relay families behind one small interface (``base.Driver``), their emulators and discovery."""

"""The web front: driver pages, JSON API."""

"""Dock widgets: thin wiring of the core generators to napari."""

"""Reading volumes lazily and writing masks (no Qt, no napari)."""

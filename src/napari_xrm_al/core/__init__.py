"""Model, training, inference, acquisition, sessions and metrology (no Qt, no napari)."""

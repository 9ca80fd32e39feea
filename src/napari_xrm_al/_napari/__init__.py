"""napari adapters: reader, writer and sample-data contributions."""

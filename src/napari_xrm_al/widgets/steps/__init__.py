"""The numbered steps of the Active learning dock, one module each."""

"""Subcommands of the ``napari-xrm-al`` command line, one module each."""

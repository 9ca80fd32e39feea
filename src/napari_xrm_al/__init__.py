"""napari-xrm-al: active-learning segmentation of 3D X-ray microscopy scans.

The package is library-first: :mod:`napari_xrm_al.io` and
:mod:`napari_xrm_al.core` import neither Qt nor napari; :mod:`napari_xrm_al._napari`
and :mod:`napari_xrm_al.widgets` adapt them to napari, and
:mod:`napari_xrm_al.cli` drives them headless.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("napari-xrm-al")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]

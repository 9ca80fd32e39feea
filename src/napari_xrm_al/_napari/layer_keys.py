"""Keys under which napari layers carry our metadata (``layer.metadata[KEY]``)."""

#: The class table, as ``ClassTable.to_dict()``.
CLASSES_KEY = "napari_xrm_al_classes"
#: A provenance dict stored with an exported mask.
PROVENANCE_KEY = "napari_xrm_al_provenance"

"""npe2 reader: XRM volumes (TIFF, zarr, ZEISS .txm/.txrm) as image layers,
napari-xrm-al masks as labels.

:func:`get_reader` only looks at names and folder contents and never raises.
OME-Zarr images that are not our masks go to napari-ome-zarr when it is
installed (it reads channels, label images and plates; we read one volume).
napari asks which plugin to use whenever several declare the same file
ending, whatever their ``get_reader`` answers; :func:`prefer_this_reader`
records this plugin as napari's choice for TIFF and zarr so that no dialog
appears.
The reader function opens lazily through :func:`~napari_xrm_al.io.volumes.
open_volume`; a problem with the input is shown as one error notification
(the sentence naming the file) and the reader returns napari's "nothing to
add" sentinel ``[(None,)]``, so napari neither raises nor shows a traceback
or its "choose another reader" dialog.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from napari_xrm_al.errors import XrmError

#: Units napari (pint) understands, as :func:`normalise_unit` spells them.
NAPARI_UNITS = ("nm", "µm", "mm", "cm", "m")
#: Colormaps for the layers of a multichannel volume, in channel order.
CHANNEL_COLORMAPS = ("magenta", "green", "cyan", "yellow", "red", "blue")
RGB_COLORMAPS = ("red", "green", "blue", "gray")
#: Layer-metadata key with where an image layer came from.
SOURCE_KEY = "napari_xrm_al_source"
#: This plugin's name in napari (the npe2 manifest's ``name``).
PLUGIN_NAME = "napari-xrm-al"
#: The plugin OME-Zarr images are handed to, when installed.
OME_ZARR_PLUGIN = "napari-ome-zarr"
#: napari reader-preference patterns (``settings.plugins.extension2reader``)
#: for what this plugin reads; ``*.zarr/`` matches zarr folders.
READER_PREFERENCES = ("*.tif", "*.tiff", "*.btf", "*.tf8", "*.tf2", "*.zarr", "*.zarr/")

#: Format suffixes a layer name leaves out, in the order they are stripped
#: (``.ome`` after ``.tif`` / ``.zarr``).
NAME_SUFFIXES = (
    ".tiff",
    ".tif",
    ".btf",
    ".tf8",
    ".tf2",
    ".zarr",
    ".ome",
    ".txrm",
    ".txm",
)

LayerData = tuple[Any, ...]
PathOrPaths = str | Sequence[str]


def _is_tiff_file(path: Any) -> bool:
    from napari_xrm_al.io.tiff import is_tiff_name

    return (
        isinstance(path, str | Path)
        and Path(path).is_file()
        and is_tiff_name(Path(path))
    )


def _claims(path: Any) -> bool:
    from napari_xrm_al.io.tiff import slice_files
    from napari_xrm_al.io.xradia import is_xradia_name
    from napari_xrm_al.io.zarr_volume import is_zarr_store

    if isinstance(path, list | tuple):
        if len(path) == 1:
            return _claims(path[0])
        return bool(path) and all(_is_tiff_file(p) for p in path)
    path = Path(path)
    if path.is_dir():
        return is_zarr_store(path) or bool(slice_files(path))
    return _is_tiff_file(path) or (path.is_file() and is_xradia_name(path))


def _single(path: PathOrPaths) -> Any:
    """The one path of a one-element list, else ``path`` itself."""
    return path[0] if isinstance(path, list | tuple) and len(path) == 1 else path


def _plugin_enabled(name: str) -> bool:
    from npe2 import PluginManager

    manifests = PluginManager.instance().iter_manifests(disabled=False)
    return any(manifest.name == name for manifest in manifests)


def _for_ome_zarr_plugin(path: PathOrPaths) -> bool:
    """Whether ``path`` is an OME-Zarr image (not our mask) napari-ome-zarr reads."""
    from napari_xrm_al.io.volumes import is_mask
    from napari_xrm_al.io.zarr_volume import is_ome_zarr

    single = _single(path)
    return (
        isinstance(single, str | Path)
        and is_ome_zarr(Path(single))
        and not is_mask(single)
        and _plugin_enabled(OME_ZARR_PLUGIN)
    )


def get_reader(path: PathOrPaths) -> Callable[[PathOrPaths], list[LayerData]] | None:
    """The reader function for TIFF files, TIFF-slice folders, zarr stores and
    ZEISS Xradia ``.txm`` / ``.txrm`` files.

    OME-Zarr images that are not our masks get napari-ome-zarr's reader when it
    is installed. Returns None for anything else (and for anything unexpected:
    napari requires that this function never raises).
    """
    try:
        if not _claims(path):
            return None
        return read_with_ome_zarr_plugin if _for_ome_zarr_plugin(path) else read_volume
    except Exception:  # noqa: BLE001 - napari requires get_reader never to raise
        return None


def read_with_ome_zarr_plugin(path: PathOrPaths) -> list[LayerData]:
    """Read an OME-Zarr image with napari-ome-zarr (through npe2)."""
    import npe2

    return npe2.read([str(_single(path))], plugin_name=OME_ZARR_PLUGIN, stack=False)


def prefer_this_reader() -> list[str]:
    """Make napari open TIFF files and zarr folders with this plugin, unasked.

    Adds :data:`READER_PREFERENCES` to napari's reader preferences, except
    patterns the user has already given a reader (their choice stays).
    Returns the patterns added.
    """
    from napari.settings import get_settings

    plugins = get_settings().plugins
    added = [p for p in READER_PREFERENCES if p not in plugins.extension2reader]
    if added:
        plugins.extension2reader = {
            **plugins.extension2reader,
            **dict.fromkeys(added, PLUGIN_NAME),
        }
    return added


def layer_name(path: str | Path) -> str:
    """A layer name from a file or folder name, without the format suffixes."""
    name = Path(path).name
    for suffix in NAME_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    return name


def _mask_layer(path: str) -> LayerData:
    from napari.utils.colormaps import DirectLabelColormap

    from napari_xrm_al._napari.layer_keys import CLASSES_KEY, PROVENANCE_KEY
    from napari_xrm_al.io.mask_reader import read_mask

    mask = read_mask(path)
    meta: dict[str, Any] = {
        "name": mask.name,
        "colormap": DirectLabelColormap(color_dict=mask.classes.napari_colormap()),
        "metadata": {
            CLASSES_KEY: mask.classes.to_dict(),
            PROVENANCE_KEY: mask.provenance,
        },
    }
    if mask.voxel_size and len(mask.voxel_size) == mask.data.ndim:
        meta["scale"] = mask.voxel_size
        meta["units"] = ("µm",) * mask.data.ndim
    return (mask.data, meta, "labels")


def _image_layer(volume: Any, name: str) -> LayerData:
    multiscale = len(volume.levels) > 1
    meta: dict[str, Any] = {
        "name": name,
        "contrast_limits": volume.contrast_limits,
        "multiscale": multiscale,
        "metadata": {
            SOURCE_KEY: {
                "path": str(volume.path),
                "format": volume.fmt,
                "voxel_size": volume.voxel_size,
                "unit": volume.unit,
                "instrument": dict(volume.instrument),
            }
        },
    }
    if volume.voxel_size is not None:
        meta["scale"] = volume.voxel_size
        if volume.unit in NAPARI_UNITS:
            meta["units"] = (volume.unit,) * 3
    return (volume.levels if multiscale else volume.data, meta, "image")


def _read(path: PathOrPaths) -> list[LayerData]:
    from napari.utils.notifications import show_info

    from napari_xrm_al.io.volume_axes import MultichannelError, channel_note
    from napari_xrm_al.io.volumes import is_mask, open_volume

    single = _single(path)
    if isinstance(single, str | Path) and is_mask(single):
        return [_mask_layer(str(single))]
    paths = list(path) if isinstance(path, list | tuple) else [path]
    name = layer_name(paths[0] if len(paths) == 1 else Path(paths[0]).parent)
    try:
        volumes = [open_volume(path)]
        names = [name]
        colormaps = ["gray"]
    except MultichannelError as exc:
        n = exc.n_channels
        volumes = [open_volume(path, channel=c) for c in range(n)]
        names = [f"{name} [{c}]" for c in range(n)]
        palette = RGB_COLORMAPS if exc.rgb else CHANNEL_COLORMAPS
        colormaps = [palette[c % len(palette)] for c in range(n)]
        show_info(f"{name} has {n} channels; each is opened as its own image layer.")
    skip = {channel_note(c, len(volumes)) for c in range(len(volumes))}
    for note in dict.fromkeys(t for v in volumes for t in v.notes if t not in skip):
        show_info(f"{name}: {note}")
    layers = []
    for volume, layer, colormap in zip(volumes, names, colormaps, strict=True):
        data, meta, kind = _image_layer(volume, layer)
        meta["colormap"] = colormap
        if len(volumes) > 1:
            meta["blending"] = "additive"
        layers.append((data, meta, kind))
    return layers


def read_volume(path: PathOrPaths) -> list[LayerData]:
    """Read ``path`` into layer data; show input problems as a notification."""
    from napari.utils.notifications import show_error

    try:
        return _read(path)
    except XrmError as exc:
        show_error(str(exc))
        return [(None,)]

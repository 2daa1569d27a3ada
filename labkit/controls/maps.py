"""From a plan's `ControlRef` to the control map a ControlNet reads, and the record of how it was made.

    image, record = control_map(ControlRef("canny", "photo.png", params={"low": 50}), 512, 512)
    record   # {"kind": "canny", "source": "photo.png", "source_sha256": "…", "params": {"low": 50, "high": 200},
             #  "size": [512, 512], "sha256": "…", "resized_from": None}

Per kind, with `preprocess=True`: canny → OpenCV edges of the image (`low`, `high`); pose → the skeleton of
an OpenPose / COCO keypoint JSON (`threshold`); scribble → the image's dark strokes as white lines on black
(`threshold`); pose or depth from a photo → an estimator whose weights must be in the local cache (none
is bundled: `ModelNotCached` with the download command). With `preprocess=False`, or kind "none" or
"layout", the image already is the map. A map that is not the render's size is resized (bilinear) and
the record says from what. An unreadable image or keypoint file is an `InvalidParameter` naming it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.controls.canny import DEFAULT_HIGH, DEFAULT_LOW, canny
from labkit.controls.pose import draw_pose, read_keypoints
from labkit.errors import InvalidParameter, ModelNotCached

if TYPE_CHECKING:  # pragma: no cover
    from labkit.plan import ControlRef

#: Parameters each preprocessor takes, with their defaults (anything else in `params` is an error).
PARAMS: dict[str, dict[str, Any]] = {
    "canny": {"low": DEFAULT_LOW, "high": DEFAULT_HIGH},
    "pose": {"threshold": 0.1},
    "scribble": {"threshold": 128},
    "depth": {},
    "layout": {},
    "none": {},
}
#: Estimators for maps made from photos, by kind: the model a user downloads to make them.
ESTIMATORS = {"pose": "lllyasviel/Annotators", "depth": "depth-anything/Depth-Anything-V2-Small-hf"}


def _read_image(path: str, what: str) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(Path(path).expanduser()) as im:
            return im.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise InvalidParameter(f"The {what} {path!r} cannot be read as an image: {e}.", value=path,
                               fix="give a PNG or JPEG file that opens in an image viewer.") from e


def _params(control: ControlRef, i: int) -> dict[str, Any]:
    known = PARAMS[control.kind]
    unknown = sorted(set(control.params) - set(known))
    if unknown and control.preprocess:
        raise InvalidParameter(f"controls[{i}] ({control.kind}) has unknown params {unknown}.", value=unknown,
                               fix=f"use only {sorted(known) or 'no params'} for {control.kind}.")
    return {**known, **control.params}


def control_map(control: ControlRef, width: int, height: int, *, index: int = 0) -> tuple[Any, dict[str, Any]]:
    """The RGB control map (PIL image, `width` x `height`) for `control`, and its record."""
    params = _params(control, index) if control.preprocess else dict(control.params)
    what = f"control image of controls[{index}] ({control.kind})"
    source = Path(control.image).expanduser()
    try:
        data = source.read_bytes()
    except OSError as e:
        raise InvalidParameter(f"The {what} {control.image!r} cannot be read: {e.strerror or e}.",
                               value=control.image, fix="give the path of an existing file.") from e
    resized_from = None
    if control.preprocess and control.kind == "pose" and source.suffix.lower() == ".json":
        image = draw_pose(read_keypoints(source, threshold=params["threshold"]), width, height)
    elif control.preprocess and control.kind in ESTIMATORS:
        raise ModelNotCached(
            f"A {control.kind} map from a photo needs an estimator, and none is in the local cache.",
            value=control.image,
            fix=f"download one (`hf download {ESTIMATORS[control.kind]}`) and make the map, or give a ready map "
                f"with preprocess=False" + (" (or OpenPose keypoints as a .json file)." if control.kind == "pose"
                                            else "."))
    else:
        image = _read_image(control.image, what)
        if control.preprocess and control.kind == "canny":
            image = canny(image, low=params["low"], high=params["high"])
        elif control.preprocess and control.kind == "scribble":
            image = _scribble(image, params["threshold"])
        if image.size != (width, height):
            resized_from = list(image.size)
            image = image.resize((width, height), resample=_bilinear())
    record = {"kind": control.kind, "source": str(control.image), "source_sha256": hashlib.sha256(data).hexdigest(),
              "preprocess": control.preprocess, "params": params, "size": [width, height],
              "sha256": hashlib.sha256(image.tobytes()).hexdigest(), "resized_from": resized_from}
    return image, record


def _scribble(image: Any, threshold: Any) -> Any:
    import numpy as np
    from PIL import Image

    if not isinstance(threshold, int) or isinstance(threshold, bool) or not 0 <= threshold <= 255:
        raise InvalidParameter(f"The scribble threshold {threshold!r} is not a whole number from 0 to 255.",
                               value=threshold, fix="use e.g. threshold=128.")
    grey = np.asarray(image.convert("L"))
    # dark strokes on a light page (a drawing) or light strokes on black (a map already): strokes become white
    strokes = grey < threshold if grey.mean() > 127 else grey >= threshold
    return Image.fromarray(np.stack([strokes.astype(np.uint8) * 255] * 3, axis=-1), "RGB")


def _bilinear() -> Any:
    from PIL import Image

    return Image.Resampling.BILINEAR

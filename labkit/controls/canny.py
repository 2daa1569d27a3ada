"""Canny edge maps: the control image of the canny ControlNets (white edges on black, three channels).

    edges = canny(Image.open("photo.png"), low=100, high=200)

OpenCV's Canny on the grey image, with its two hysteresis thresholds (the values the canny ControlNets'
examples use by default); an edge map the same size as the input.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from labkit.errors import InvalidParameter

DEFAULT_LOW, DEFAULT_HIGH = 100, 200


def canny(image: Any, low: int = DEFAULT_LOW, high: int = DEFAULT_HIGH) -> Any:
    """The edge map (PIL RGB image) of `image` (PIL image or HxWx3 uint8 array)."""
    import cv2
    from PIL import Image

    for name, v in (("low", low), ("high", high)):
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 255:
            raise InvalidParameter(f"The canny {name} threshold {v!r} is not a whole number from 0 to 255.", value=v,
                                   fix="use e.g. low=100, high=200.")
    if low > high:
        raise InvalidParameter(f"The canny low threshold {low} is above the high one {high}.", value=f"{low}>{high}",
                               fix="give low <= high, e.g. low=100, high=200.")
    if isinstance(image, Image.Image):
        array = np.asarray(image.convert("RGB"))
    elif isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8:
        array = image
    else:
        raise InvalidParameter(f"canny needs a PIL image or an HxWx3 uint8 array, got {type(image).__name__}.",
                               value=type(image).__name__, fix="open the file with PIL.Image.open first.")
    edges = cv2.Canny(cv2.cvtColor(np.ascontiguousarray(array), cv2.COLOR_RGB2GRAY), low, high)
    return Image.fromarray(np.stack([edges] * 3, axis=-1), "RGB")

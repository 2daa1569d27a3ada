"""Control maps for ControlNet: each preprocessor is a function image (or keypoints) → control map, and what
made a map is recorded beside it (`map_record`).

    from labkit.controls import canny, draw_pose, read_keypoints
    edges = canny(photo, low=100, high=200)
    pose = draw_pose(read_keypoints("pose.json"), 512, 512)
    map_record(pose, "pose", {"threshold": 0.1})   # {"kind": "pose", "sha256": "…", "size": [512, 512], …}

`pose` draws OpenPose / COCO keypoints as the OpenPose ControlNets' skeleton images; `canny` is OpenCV's edge
detector; `maps.control_map` turns a plan's `ControlRef` into its map and record. numpy, PIL and OpenCV
only: no model is loaded here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from labkit.controls.canny import canny
from labkit.controls.maps import control_map
from labkit.controls.pose import Person, Poses, draw_pose, read_keypoints


def map_record(image: Any, kind: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """What a render records about a control map: its kind, the preprocessor's parameters, its size and the
    SHA-256 of its RGB pixels (so a replay can tell it drew the same map)."""
    rgb = image.convert("RGB")
    return {"kind": kind, "params": dict(params), "size": list(rgb.size),
            "sha256": hashlib.sha256(rgb.tobytes()).hexdigest()}


__all__ = ["Person", "Poses", "canny", "control_map", "draw_pose", "map_record", "read_keypoints"]

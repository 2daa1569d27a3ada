"""Pose control maps: OpenPose / COCO keypoints drawn as the skeleton image the OpenPose ControlNets were
trained on.

    people = read_keypoints(json.load(open("pose.json")))      # OpenPose BODY_25 / COCO-18, or COCO-17
    pose_map = draw_pose(people, 512, 768)                       # a PIL image, black background

Conventions (those of the OpenPose annotator the SD 1.5 / SDXL OpenPose ControlNets were trained with):
the body is the 18 COCO-18 joints (nose, neck, right shoulder/elbow/wrist, left shoulder/elbow/wrist, right
hip/knee/ankle, left hip/knee/ankle, right/left eye, right/left ear); 17 limbs, limb `i` between the joints
`LIMBS[i]` filled as an ellipse in `COLOURS[i]` at 60% intensity, then every joint a disc in its own
`COLOURS[j]` at full intensity; hands as 20 bones coloured around the hue circle with blue joints; the face
as white dots. Stick width and disc radius are 4 px at 512 px (the training size) and scale with the map's
longer side. A joint that is missing or under the confidence threshold draws nothing, and neither do the
limbs that touch it. BODY_25 drops its mid-hip and feet; COCO-17 gains a neck between the shoulders when
both are there.

Coordinates are pixels of the canvas the keypoints were taken on (`canvas_width` / `canvas_height` in the
JSON, else the map's size) or, when every value is within [0, 1], fractions of it.
"""

from __future__ import annotations

import colorsys
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labkit.errors import InvalidParameter

Point = tuple[float, float]

#: Limbs as pairs of COCO-18 joint indices, in the annotator's order (their colour is COLOURS[i]).
LIMBS = ((1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13),
         (1, 0), (0, 14), (14, 16), (0, 15), (15, 17))
COLOURS = ((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
           (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
           (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85))
JOINTS = ("nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
          "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
          "right_eye", "left_eye", "right_ear", "left_ear")
HAND_BONES = ((0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10), (10, 11), (11, 12),
              (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18), (18, 19), (19, 20))
LIMB_INTENSITY = 0.6
#: BODY_25 index of each COCO-18 joint (BODY_25's mid-hip, 8, and feet, 19-24, have no COCO-18 joint).
FROM_BODY25 = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)
#: COCO-17 index of each COCO-18 joint (None: the neck, made from the two shoulders).
FROM_COCO17 = (0, None, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)
TRAINED_SIDE = 512


@dataclass(frozen=True)
class Person:
    """One person's keypoints, COCO-18 body order; None for a joint that is not there."""

    body: tuple[Point | None, ...]
    hands: tuple[tuple[Point | None, ...], ...] = ()
    face: tuple[Point | None, ...] = ()


@dataclass(frozen=True)
class Poses:
    """The people of one keypoint file and the canvas their coordinates refer to (None: the map's own)."""

    people: tuple[Person, ...]
    canvas: tuple[int, int] | None = None
    normalized: bool = False
    source: str = "openpose"
    params: dict[str, Any] = field(default_factory=dict)


def _triples(values: Any, what: str, expect: Sequence[int] | None = None) -> list[tuple[float, float, float]]:
    if not isinstance(values, Sequence) or isinstance(values, (str, bytes)) or len(values) % 3:
        raise InvalidParameter(f"{what} must be a flat list of x, y, confidence triples, got "
                               f"{str(values)[:80]!r}.", value=str(values)[:200],
                               fix="write [x0, y0, c0, x1, y1, c1, …] as OpenPose does.")
    try:
        flat = [float(v) for v in values]
    except (TypeError, ValueError) as e:
        raise InvalidParameter(f"{what} holds a value that is not a number.", value=str(values)[:200],
                               fix="keypoints are numbers: x, y and a confidence (0 for a missing joint).") from e
    if not all(np.isfinite(flat)):
        raise InvalidParameter(f"{what} holds NaN or infinity.", value=str(values)[:200],
                               fix="write 0, 0, 0 for a joint that is not there.")
    n = len(flat) // 3
    if expect is not None and n not in expect:
        raise InvalidParameter(f"{what} has {n} keypoints; labkit reads {' or '.join(map(str, expect))}.",
                               value=n, fix="use OpenPose BODY_25 (25), COCO-18 (18) or COCO-17 (17) keypoints.")
    return [(flat[3 * i], flat[3 * i + 1], flat[3 * i + 2]) for i in range(n)]


def _points(triples: list[tuple[float, float, float]], threshold: float) -> list[Point | None]:
    return [(x, y) if c >= threshold and c > 0 else None for x, y, c in triples]


def _body(triples: list[tuple[float, float, float]], threshold: float) -> tuple[tuple[Point | None, ...], str]:
    pts = _points(triples, threshold)
    if len(pts) == 25:
        return tuple(pts[i] for i in FROM_BODY25), "body25"
    if len(pts) == 18:
        return tuple(pts), "coco18"
    body: list[Point | None] = []
    for i in FROM_COCO17:
        if i is not None:
            body.append(pts[i])
            continue
        left, right = pts[5], pts[6]
        body.append(((left[0] + right[0]) / 2, (left[1] + right[1]) / 2) if left and right else None)
    return tuple(body), "coco17"


def read_keypoints(data: Mapping[str, Any] | str | Path, *, threshold: float = 0.1) -> Poses:
    """People from an OpenPose JSON (``{"people": [{"pose_keypoints_2d": [...], "hand_left_keypoints_2d":
    [...], "hand_right_keypoints_2d": [...], "face_keypoints_2d": [...]}]}``; 25 or 18 body keypoints) or a
    COCO-17 annotation list (``{"annotations": [{"keypoints": [...]}]}``, visibility 0 = missing), as dict,
    JSON text or a file. Joints with a confidence under `threshold` are left out. `InvalidParameter` names
    what is wrong."""
    if isinstance(data, Path) or (isinstance(data, str) and not data.lstrip().startswith("{")):
        path = Path(data).expanduser()
        try:
            data = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise InvalidParameter(f"The keypoint file {str(path)!r} cannot be read: {e}.", value=str(path),
                                   fix="give an OpenPose JSON file (UTF-8).") from e
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError as e:
            raise InvalidParameter(f"The keypoints are not valid JSON: {e}.", value=data[:200],
                                   fix='write {"people": [{"pose_keypoints_2d": [x, y, c, …]}]}.') from e
    if not isinstance(data, Mapping) or not ({"people", "annotations"} & set(data)):
        raise InvalidParameter("Keypoints need a 'people' list (OpenPose) or an 'annotations' list (COCO).",
                               value=str(data)[:200], fix='write {"people": [{"pose_keypoints_2d": [x, y, c, …]}]}.')
    if not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise InvalidParameter(f"threshold {threshold!r} is not a confidence in [0, 1].", value=threshold,
                               fix="use e.g. threshold=0.1.")
    people, source = [], "openpose"
    for i, person in enumerate(data.get("people") or data.get("annotations") or []):
        if not isinstance(person, Mapping):
            raise InvalidParameter(f"Person {i} is not an object.", value=str(person)[:200],
                                   fix="each person is an object with pose_keypoints_2d (or keypoints).")
        key = "pose_keypoints_2d" if "pose_keypoints_2d" in person else "keypoints"
        body, source = _body(_triples(person.get(key, []), f"person {i} {key}", (17, 18, 25)), threshold)
        hands = tuple(tuple(_points(_triples(person[k], f"person {i} {k}", (21,)), threshold))
                      for k in ("hand_left_keypoints_2d", "hand_right_keypoints_2d") if person.get(k))
        face = (tuple(_points(_triples(person["face_keypoints_2d"], f"person {i} face", (68, 70)), threshold))
                if person.get("face_keypoints_2d") else ())
        people.append(Person(body, hands, face))
    canvas = None
    if "canvas_width" in data and "canvas_height" in data:
        w, h = data["canvas_width"], data["canvas_height"]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (w, h)):
            raise InvalidParameter(f"canvas_width/canvas_height {w!r}x{h!r} are not sizes in pixels.",
                                   value=f"{w}x{h}", fix="give whole numbers of pixels, or leave them out.")
        canvas = (w, h)
    coords = [v for p in people for pt in (*p.body, *(q for hand in p.hands for q in hand), *p.face) if pt
              for v in pt]
    normalized = bool(coords) and all(0 <= v <= 1 for v in coords)
    return Poses(tuple(people), canvas, normalized, source, {"threshold": threshold, "format": source})


def stick_width(width: int, height: int) -> int:
    """The limb half-width and joint radius in pixels for a map of this size: 4 at 512 px, scaled."""
    return max(1, round(4 * max(width, height) / TRAINED_SIDE))


def draw_pose(poses: Poses | Sequence[Person], width: int, height: int) -> Any:
    """The RGB skeleton map (PIL image, `width` x `height`) of every person, by the conventions above."""
    import cv2
    from PIL import Image

    for name, v in (("width", width), ("height", height)):
        if not isinstance(v, int) or isinstance(v, bool) or not 8 <= v <= 8192:
            raise InvalidParameter(f"The pose map's {name} {v!r} is not a size from 8 to 8192 pixels.", value=v,
                                   fix="draw the map at the size of the image to render.")
    if not isinstance(poses, Poses):
        poses = Poses(tuple(poses))
    sx, sy = _scale(poses, width, height)
    stick = stick_width(width, height)

    def at(p: Point) -> tuple[float, float]:
        return p[0] * sx, p[1] * sy

    limbs = np.zeros((height, width, 3), np.uint8)
    for person in poses.people:
        for (a, b), colour in zip(LIMBS, COLOURS, strict=False):
            pa, pb = person.body[a], person.body[b]
            if pa is None or pb is None:
                continue
            (x0, y0), (x1, y1) = at(pa), at(pb)
            length = float(np.hypot(x1 - x0, y1 - y0))
            angle = int(np.degrees(np.arctan2(y0 - y1, x0 - x1)))
            poly = cv2.ellipse2Poly((int((x0 + x1) / 2), int((y0 + y1) / 2)), (int(length / 2), stick), angle, 0,
                                    360, 1)
            cv2.fillConvexPoly(limbs, poly, colour)
    canvas = (limbs * LIMB_INTENSITY).astype(np.uint8)
    for person in poses.people:
        for point, colour in zip(person.body, COLOURS, strict=True):
            if point is not None:
                cv2.circle(canvas, tuple(int(v) for v in at(point)), stick, colour, thickness=-1)
        for hand in person.hands:
            for i, (a, b) in enumerate(HAND_BONES):
                if hand[a] is not None and hand[b] is not None:
                    rgb = tuple(int(c * 255) for c in colorsys.hsv_to_rgb(i / len(HAND_BONES), 1.0, 1.0))
                    cv2.line(canvas, tuple(int(v) for v in at(hand[a])), tuple(int(v) for v in at(hand[b])), rgb,
                             max(1, stick // 2))
            for point in hand:
                if point is not None:
                    cv2.circle(canvas, tuple(int(v) for v in at(point)), max(1, stick), (0, 0, 255), thickness=-1)
        for point in person.face:
            if point is not None:
                cv2.circle(canvas, tuple(int(v) for v in at(point)), max(1, stick * 3 // 4), (255, 255, 255),
                           thickness=-1)
    return Image.fromarray(canvas, "RGB")


def _scale(poses: Poses, width: int, height: int) -> tuple[float, float]:
    if poses.normalized:
        return float(width), float(height)
    if poses.canvas is not None:
        return width / poses.canvas[0], height / poses.canvas[1]
    return 1.0, 1.0

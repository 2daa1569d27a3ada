"""The toy world: procedural scenes, their captions, a classical detector, and datasets.

The ground truth for the toy models: `scenes` renders one or two flat shapes on a dark background,
`captions` describes them (and parses descriptions back, and fixes a train / held-out split of
attribute combinations), `detect` reads the attributes back out of any image, and `data` writes
imagefolder datasets or streams (image, caption) pairs; `motion` makes clips of one moving object with
motion captions, and `motion_score` tracks the object through a clip to judge it. Only numpy and
Pillow are used; nothing is read, probed or cached at import.
"""

from __future__ import annotations

from labkit.toyworld.captions import (
                                      OBJECT_TEMPLATES,
                                      caption,
                                      is_held_out,
                                      parse,
                                      prompts,
                                      sample_split_scene,
                                      split_of,
)
from labkit.toyworld.data import iter_pairs, make_item, read_metadata, write_dataset
from labkit.toyworld.detect import (
                                      Blob,
                                      Detection,
                                      ShapeClassifier,
                                      default_classifiers,
                                      detect,
                                      template_classifier,
                                      verdict,
)
from labkit.toyworld.motion import (
                                      MOTIONS,
                                      Clip,
                                      MotionSpec,
                                      is_held_out_motion,
                                      make_clip_item,
                                      motion_caption,
                                      motion_prompts,
                                      parse_motion,
                                      render_clip,
                                      write_clip_dataset,
)
from labkit.toyworld.motion_score import motion_verdict
from labkit.toyworld.scenes import (
                                      ALL_SHAPES,
                                      BACKGROUNDS,
                                      BASE_SHAPES,
                                      COLOURS,
                                      POSITIONS,
                                      SHAPE_GEOMETRY,
                                      SIZES,
                                      Obj,
                                      Scene,
                                      ShapeGeometry,
                                      render,
                                      render_pil,
                                      sample_scene,
)

__all__ = [
    "ALL_SHAPES", "BACKGROUNDS", "BASE_SHAPES", "COLOURS", "MOTIONS", "OBJECT_TEMPLATES", "POSITIONS",
    "SHAPE_GEOMETRY", "SIZES", "Blob", "Detection", "Obj", "Scene", "ShapeClassifier", "ShapeGeometry",
    "caption", "default_classifiers", "detect", "is_held_out", "iter_pairs", "make_item", "parse",
    "prompts", "read_metadata", "render", "render_pil", "sample_scene", "sample_split_scene", "split_of",
    "template_classifier", "verdict", "write_dataset",
    # motion: moving scenes, their captions and split, and the clip verdict
    "Clip", "MotionSpec", "is_held_out_motion", "make_clip_item", "motion_caption", "motion_prompts",
    "motion_verdict", "parse_motion", "render_clip", "write_clip_dataset",
]

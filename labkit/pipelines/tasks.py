"""From a loaded pipeline to the pipeline for a task, sharing its weights (no second load)."""

from __future__ import annotations

from typing import Any

VIDEO_IMAGE_CLASSES = ("StableVideoDiffusionPipeline", "I2VGenXLPipeline")
TEXT_VIDEO_PREFIXES = ("Wan", "LTX", "CogVideoX", "HunyuanVideo", "AnimateDiff", "TextToVideo", "Mochi")


def pipeline_kind(pipe: Any) -> str:
    """'image', 'img2vid' or 'txt2vid' for a loaded pipeline, from its class."""
    name = type(pipe).__name__
    if name in VIDEO_IMAGE_CLASSES or ("ImageToVideo" in name):
        return "img2vid"
    if name.startswith(TEXT_VIDEO_PREFIXES):
        return "txt2vid"
    return "image"


def pipeline_for_task(pipe: Any, task: str, *, first_frame: bool = False) -> Any:
    """The pipeline that does `task` with `pipe`'s components.

    `first_frame`: the model was trained to continue a given first frame (a labkit motion model), so a
    text-to-video AnimateDiff pipeline also does img2vid (`labkit.pipelines.animatediff`).
    Raises ValueError when the loaded model cannot do the task.
    """
    kind = pipeline_kind(pipe)
    if task == "img2vid" and kind == "txt2vid" and first_frame:
        from labkit.pipelines.animatediff import takes_first_frame

        if takes_first_frame(pipe):
            return pipe
    if task == "txt2img":
        if kind != "image":
            raise ValueError(task)
        from diffusers import AutoPipelineForText2Image

        return pipe if "Img2Img" not in type(pipe).__name__ else AutoPipelineForText2Image.from_pipe(pipe)
    if task == "img2img":
        if kind != "image":
            raise ValueError(task)
        from diffusers import AutoPipelineForImage2Image

        return pipe if "Img2Img" in type(pipe).__name__ else AutoPipelineForImage2Image.from_pipe(pipe)
    if task == kind:
        return pipe
    raise ValueError(task)

"""Toy motion by trajectory diffusion and a warp renderer: image-to-video that keeps the object by construction.

    pipe = ToyWarpImageToVideoPipeline.from_pretrained(folder)       # what labkit's loader does
    frames = pipe(image=first_frame, prompt="a blue square moving up").frames[0]

The architecture is that of the image-animation models that generate motion, not pixels (Generative Image
Dynamics, Li et al. 2024; latent flow diffusion, Ni et al. 2023): a diffusion model samples the motion of the
given first frame, conditioned on it and on the caption, and a renderer warps that frame along the motion.
In the toy world every motion is a similarity transform of one flat object, so the motion is small: the
object's centre in frame 0 and the control points of a Bézier curve of its displacement and log scale over
the clip (`clip_trajectory`; 11 numbers at degree 3, smooth by construction). `ToyTrajectoryModel`, a
residual MLP on that vector, FiLM-conditioned on the timestep, an attention pooling of the caption's CLIP
hidden states and a small CNN of the frame, learns v-prediction with diffusers' DDIM scheduler;
`warp_frames` renders any number of frames by evaluating the curve and resampling the first frame
(`torch.nn.functional.grid_sample`, the border colour filling what enters the canvas).

Why, next to the AnimateDiff recipe (`labkit.training.toy_motion`): that model gets held-out directions
right (93%) but redraws the object in every frame, and keeps its shape and colour through all 16 frames in
only about a tenth of the clips after the 60 CPU minutes issue 10 allows. Here the pixels of every frame are
the first frame's, moved: identity holds unless the motion carries the object out of the canvas, and the
training budget goes to the motion alone (3000 steps in under 5 minutes on 2 cores). What it cannot do, by
design: anything but a similarity transform of the whole picture (no new content, no independent motion of two
objects — the toy clips have neither).

Text-to-video: like the AnimateDiff export, the model names a keyframe model (the toy base) in its metadata,
and labkit's render path draws frame 0 with it from the caption's still prompt before animating it.
The folder is a diffusers pipeline: `model_index.json` names this class and `["labkit.toyworld.warp",
"ToyTrajectoryModel"]` for the motion model (diffusers imports custom component classes by module path), and
`ToyWarpImageToVideoPipeline.from_pretrained` loads it with diffusers' own machinery. Unlike the rest of
`labkit.toyworld`, this module imports torch and diffusers when it is imported (it defines a diffusers model
and pipeline); labkit imports it only to load a folder that names its pipeline, or to train one. The recipe
that trains it is `labkit.training.toy_warp` (its names still import from here).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from diffusers import ConfigMixin, DiffusionPipeline, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.utils import BaseOutput

if TYPE_CHECKING:  # pragma: no cover
    from labkit.toyworld.motion import Clip

#: Scales that bring the trajectory's numbers to about [-1, 1]: displacements are divided by TRAVEL_SCALE
#: (fraction of the canvas; the toy clips travel 0.22–0.28) and log scales by log(SCALE_SCALE) (they grow or
#: shrink by 1.4–1.6).
TRAVEL_SCALE = 0.3
SCALE_SCALE = 1.6


# --- the motion representation -------------------------------------------------------------------


def state_dim(degree: int) -> int:
    """Length of a trajectory vector: the centre (2) and the control points P1..P_degree of the motion (3 each)."""
    return 2 + 3 * degree


def bernstein(degree: int, frames: int, dtype: Any = torch.float32) -> torch.Tensor:
    """(frames, degree + 1): the Bernstein basis of a Bézier curve of `degree` at times i/(frames-1)."""
    u = torch.linspace(0, 1, frames, dtype=torch.float64)[:, None]
    j = torch.arange(degree + 1, dtype=torch.float64)[None]
    comb = torch.tensor([math.comb(degree, k) for k in range(degree + 1)], dtype=torch.float64)[None]
    return (comb * u**j * (1 - u) ** (degree - j)).to(dtype)  # on the CPU: callers move it


def clip_trajectory(clip: Clip, degree: int = 3) -> np.ndarray:
    """The normalised trajectory vector of a toy clip (float32, `state_dim(degree)`): the object's centre in
    frame 0 mapped to [-1, 1], then the control points P1..P_degree of the Bézier curve (P0 = 0: frame 0 does
    not move) of its displacement from frame 0, over TRAVEL_SCALE, and its log radius ratio, over
    log(SCALE_SCALE) — least squares over the clip's frames, exact for the toy world's uniform motions."""
    (x0, y0), r0 = clip.xy_radius(0)
    rows = []
    for i in range(clip.frames):
        (x, y), r = clip.xy_radius(i)
        rows.append([(x - x0) / TRAVEL_SCALE, (y - y0) / TRAVEL_SCALE, math.log(r / r0) / math.log(SCALE_SCALE)])
    basis = bernstein(degree, clip.frames, torch.float64)[:, 1:]
    points = torch.linalg.lstsq(basis, torch.tensor(rows, dtype=torch.float64)).solution  # (degree, 3)
    return np.asarray([2 * x0 - 1, 2 * y0 - 1, *points.flatten().tolist()], dtype=np.float32)


def frame_transforms(state: torch.Tensor, frames: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(centre (B, 2), displacement (B, F, 2), scale (B, F)) in canvas fractions for `frames` frames, read
    from (B, state_dim) trajectories: the Bézier curve at times i/(frames-1) (frame 0: no motion)."""
    b = state.shape[0]
    degree = (state.shape[1] - 2) // 3
    centre = (state[:, :2] + 1) / 2
    points = state[:, 2:].reshape(b, degree, 3)
    basis = bernstein(degree, frames, state.dtype)[:, 1:].to(state.device)
    at = torch.einsum("fd,bdc->bfc", basis, points)  # (B, F, 3)
    return centre, at[..., :2] * TRAVEL_SCALE, torch.exp(at[..., 2] * math.log(SCALE_SCALE))


def warp_frames(image: torch.Tensor, state: torch.Tensor, frames: int) -> torch.Tensor:
    """(B, F, C, H, W): each (B, C, H, W) `image` moved along its trajectory — frame i shows the image scaled
    by s_i about the centre and shifted by d_i (inverse mapping, bilinear, the border colour outside)."""
    import torch.nn.functional as F

    b, c, h, w = image.shape
    centre, move, scale = frame_transforms(state.float(), frames)
    cn = (2 * centre - 1)[:, None, :]  # normalised [-1, 1] coordinates, y down like the canvas
    tn = 2 * move
    inv = 1.0 / scale  # (B, F)
    theta = torch.zeros(b, frames, 2, 3, dtype=torch.float32, device=state.device)
    theta[..., 0, 0] = inv
    theta[..., 1, 1] = inv
    theta[..., :, 2] = cn - (cn + tn) * inv[..., None]
    grid = F.affine_grid(theta.reshape(b * frames, 2, 3), [b * frames, c, h, w], align_corners=False)
    src = image.float().to(state.device)[:, None].expand(b, frames, c, h, w).reshape(b * frames, c, h, w)
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.reshape(b, frames, c, h, w)


# --- the model -----------------------------------------------------------------------------------


class _Block(torch.nn.Module):
    def __init__(self, width: int, cond: int):
        super().__init__()
        self.norm = torch.nn.LayerNorm(width, elementwise_affine=False)
        self.film = torch.nn.Linear(cond, 2 * width)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(width, 2 * width), torch.nn.SiLU(),
                                       torch.nn.Linear(2 * width, width))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(cond).chunk(2, dim=-1)
        return x + self.mlp(self.norm(x) * (1 + scale) + shift)


class ToyTrajectoryModel(ModelMixin, ConfigMixin):
    """The denoiser of trajectory vectors: `forward(sample, timestep, encoder_hidden_states, image)` predicts
    v for (B, state_dim) noisy trajectories, given the caption's text-encoder hidden states (B, T, text_dim)
    and the first frame (B, 3, image_size, image_size) in [-1, 1]."""

    @register_to_config
    def __init__(self, degree: int = 3, text_dim: int = 64, image_size: int = 64, width: int = 256, depth: int = 4,
                 cond_dim: int = 128, text_heads: int = 4):
        super().__init__()
        dim = state_dim(degree)
        self.time_mlp = torch.nn.Sequential(torch.nn.Linear(64, cond_dim), torch.nn.SiLU(),
                                            torch.nn.Linear(cond_dim, cond_dim))
        self.text_query = torch.nn.Parameter(torch.randn(1, 1, text_dim) * 0.02)
        self.text_attn = torch.nn.MultiheadAttention(text_dim, text_heads, batch_first=True)
        self.text_proj = torch.nn.Linear(2 * text_dim, cond_dim)
        side = image_size // 8
        self.image_enc = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 4, 2, 1), torch.nn.SiLU(), torch.nn.Conv2d(16, 32, 4, 2, 1), torch.nn.SiLU(),
            torch.nn.Conv2d(32, 32, 4, 2, 1), torch.nn.SiLU(), torch.nn.Flatten(),
            torch.nn.Linear(32 * side * side, cond_dim))
        self.inp = torch.nn.Linear(dim, width)
        self.blocks = torch.nn.ModuleList(_Block(width, cond_dim) for _ in range(depth))
        self.out = torch.nn.Sequential(torch.nn.LayerNorm(width), torch.nn.Linear(width, dim))
        torch.nn.init.zeros_(self.out[1].weight)
        torch.nn.init.zeros_(self.out[1].bias)

    def _time(self, timestep: Any, n: int) -> torch.Tensor:
        """The timestep embedding (sinusoidal, then an MLP) for `n` samples (one timestep or one each)."""
        device = self.inp.weight.device
        t = torch.as_tensor(timestep, dtype=torch.float32, device=device).reshape(-1)
        if t.numel() == 1:
            t = t.expand(n)
        freqs = torch.exp(-math.log(10000.0) * torch.arange(32, dtype=torch.float32, device=device) / 32)
        ang = t[:, None] * freqs[None]
        return self.time_mlp(torch.cat([ang.sin(), ang.cos()], dim=-1).to(self.inp.weight.dtype))

    def forward(self, sample: torch.Tensor, timestep: Any, encoder_hidden_states: torch.Tensor,
                image: torch.Tensor) -> torch.Tensor:
        n = sample.shape[0]
        dtype = self.inp.weight.dtype
        text = encoder_hidden_states.to(dtype)
        pooled, _ = self.text_attn(self.text_query.expand(n, -1, -1), text, text, need_weights=False)
        cond = (self._time(timestep, n) + self.text_proj(torch.cat([pooled[:, 0], text.mean(dim=1)], dim=-1))
                + self.image_enc(image.to(dtype)))
        x = self.inp(sample.to(dtype))
        for block in self.blocks:
            x = block(x, cond)
        return self.out(x).float()


# --- the pipeline --------------------------------------------------------------------------------


@dataclass
class ToyWarpVideoOutput(BaseOutput):
    """`frames`: one list of PIL frames per clip (as `AnimateDiffPipeline`'s output), or a (B, F, H, W, 3)
    float array for output_type "np"; `trajectories`: the sampled (B, state_dim) vectors."""

    frames: Any
    trajectories: Any = None


def image_tensor(images: Sequence[Any], width: int, height: int | None = None) -> torch.Tensor:
    """(B, 3, height, width) in [-1, 1] from PIL images (resized; height defaults to width)."""
    size = (int(width), int(height or width))
    arr = np.stack([np.asarray(im.convert("RGB").resize(size), dtype=np.float32) for im in images])
    return torch.from_numpy(arr / 127.5 - 1.0).permute(0, 3, 1, 2).contiguous()


class ToyWarpImageToVideoPipeline(DiffusionPipeline):
    """Image-to-video for the toy world: sample the given image's trajectory, warp the image along it."""

    model_cpu_offload_seq = "text_encoder->motion"
    _callback_tensor_inputs = ["latents"]

    def __init__(self, motion: ToyTrajectoryModel, text_encoder: Any, tokenizer: Any, scheduler: Any):
        super().__init__()
        self.register_modules(motion=motion, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)

    @property
    def interrupt(self) -> bool:
        return getattr(self, "_interrupt", False)

    def encode_prompt(self, prompts: Sequence[str]) -> torch.Tensor:
        ids = self.tokenizer(list(prompts), padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        return self.text_encoder(ids.to(self.text_encoder.device))[0]

    @torch.no_grad()
    def __call__(self, image: Any = None, prompt: str | Sequence[str] = "", negative_prompt: str | None = None,
                 num_frames: int = 16, height: int | None = None, width: int | None = None,
                 num_inference_steps: int = 20, guidance_scale: float = 2.0, generator: Any = None,
                 latents: torch.Tensor | None = None, output_type: str = "pil", return_dict: bool = True,
                 callback_on_step_end: Callable[..., dict[str, Any]] | None = None,
                 callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",)) -> Any:
        from diffusers.utils.torch_utils import randn_tensor

        if image is None:
            raise ValueError(f"{type(self).__name__} animates a given first frame: pass image= (labkit's render "
                             "path draws one with the model's keyframe model for text-to-video).")
        images = list(image) if isinstance(image, (list, tuple)) else [image]
        prompts = [prompt] * len(images) if isinstance(prompt, str) else list(prompt)
        if len(prompts) != len(images):
            raise ValueError(f"{len(prompts)} prompts for {len(images)} images.")
        if num_frames < 1:
            raise ValueError(f"num_frames={num_frames}: a clip needs at least 1 frame.")
        width = int(width or images[0].width)
        height = int(height or images[0].height)
        self._interrupt = False
        device = self._execution_device
        size = self.motion.config.image_size
        cond_image = image_tensor(images, size).to(device)
        text = self.encode_prompt(prompts).to(device)
        guided = guidance_scale > 1.0
        if guided:
            text = torch.cat([self.encode_prompt([negative_prompt or ""] * len(prompts)).to(device), text])
            cond_image = torch.cat([cond_image, cond_image])
        shape = (len(images), state_dim(self.motion.config.degree))
        x = randn_tensor(shape, generator=generator, device=device) if latents is None else latents.float().to(device)
        self.scheduler.set_timesteps(num_inference_steps)
        x = x * self.scheduler.init_noise_sigma
        for i, t in enumerate(self.scheduler.timesteps):
            if self.interrupt:
                break
            inp = torch.cat([x, x]) if guided else x
            pred = self.motion(self.scheduler.scale_model_input(inp, t), t, text, cond_image)
            if guided:
                uncond, cond = pred.chunk(2)
                pred = uncond + guidance_scale * (cond - uncond)
            x = self.scheduler.step(pred, t, x, generator=generator).prev_sample
            if callback_on_step_end is not None:
                out = callback_on_step_end(self, i, t, {"latents": x})
                x = out.get("latents", x)
        clips = warp_frames(image_tensor(images, width, height), x, num_frames)  # at the asked size
        arr = ((clips.clamp(-1, 1) + 1) / 2).permute(0, 1, 3, 4, 2).cpu().numpy()
        if output_type == "pil":
            from PIL import Image

            frames = [[Image.fromarray(np.round(f * 255).astype(np.uint8)) for f in clip] for clip in arr]
        else:
            frames = arr
        self.maybe_free_model_hooks()
        if not return_dict:
            return (frames,)
        return ToyWarpVideoOutput(frames=frames, trajectories=x)


#: The warp recipe's names, at their old address (they moved to `labkit.training.toy_warp`, issue 20).
_RECIPE = ("ToyWarpConfig", "ToyWarpTask", "train_toy_warp")


def __getattr__(name: str) -> Any:
    if name in _RECIPE:  # imported on first use: the recipe imports this module
        from labkit.training import toy_warp

        return getattr(toy_warp, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["SCALE_SCALE", "TRAVEL_SCALE", "ToyTrajectoryModel", "ToyWarpImageToVideoPipeline", "ToyWarpVideoOutput",
           "clip_trajectory", "frame_transforms", "image_tensor", "state_dim", "warp_frames"]

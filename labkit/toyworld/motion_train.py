"""moved to labkit.training.toy_motion (the AnimateDiff recipe) and labkit.training.motion_recipes (what it
shares with the warp recipe), issue 20; kept so old imports work (the shipped `toyworld-animatediff` card
names `labkit.toyworld.motion_train.animate`). The base loader is now `load_base_components(env, base)`."""

from labkit.training.motion_recipes import (
    DATA_DESCRIPTION,
    LICENCE,
    MOTION_WORD_INIT,
    copy_tokenizer_files,
    heldout_metrics,
    init_word_embeddings,
    load_base_components,
    motion_train_config,
    run_motion_recipe,
    validation_prompts,
)
from labkit.training.toy_motion import (
    ToyMotionConfig,
    ToyMotionTask,
    adapter_config,
    animate,
    build_motion_unet,
    encode_image,
    extract_adapter,
    first_frame_kwargs,
    make_motion_pipeline,
    motion_modules,
    path_mask,
    sample_timesteps,
    save_motion_pipeline,
    spatial_state,
    train_toy_motion,
)

__all__ = ["DATA_DESCRIPTION", "LICENCE", "MOTION_WORD_INIT", "ToyMotionConfig", "ToyMotionTask", "adapter_config",
           "animate", "build_motion_unet", "copy_tokenizer_files", "encode_image", "extract_adapter",
           "first_frame_kwargs", "heldout_metrics", "init_word_embeddings", "load_base_components",
           "make_motion_pipeline", "motion_modules", "motion_train_config", "path_mask", "run_motion_recipe",
           "sample_timesteps", "save_motion_pipeline", "spatial_state", "train_toy_motion", "validation_prompts"]

"""Model definitions."""

from .videomamba import OUTPUT_KINDS, POS_EMBED_KINDS, VideoMamba, VideoMambaConfig, checkpoint_filter_fn

__all__ = ["OUTPUT_KINDS", "POS_EMBED_KINDS", "VideoMamba", "VideoMambaConfig", "checkpoint_filter_fn"]

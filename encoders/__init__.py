"""Encoders: VideoMamba video backbones (both published variants) and the selective scan.

Layout follows mamba-ssm: ``ops`` (scan, conv), ``modules`` (mixer, block),
``models`` (backbones), and a name registry in ``factory``.
"""

from .factory import create_video_encoder, list_video_encoders, load_video_weights, video_encoder_config
from .models import VideoMamba, VideoMambaConfig, checkpoint_filter_fn
from .modules import BiMambaMixer, TokenLayout
from .ops import selective_scan

__all__ = [
    "BiMambaMixer",
    "TokenLayout",
    "VideoMamba",
    "VideoMambaConfig",
    "checkpoint_filter_fn",
    "create_video_encoder",
    "list_video_encoders",
    "load_video_weights",
    "selective_scan",
    "video_encoder_config",
]

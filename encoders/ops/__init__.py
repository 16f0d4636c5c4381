"""Low-level operations: the selective scan and the causal depthwise convolution."""

from .causal_conv import causal_conv1d
from .selective_scan import (
    SCAN_BACKEND_ENV,
    SCAN_BACKENDS,
    ScanBackendUnavailable,
    cuda_scan_available,
    resolve_scan_backend,
    selective_scan,
    selective_scan_reference,
    selective_scan_torch,
)

__all__ = [
    "SCAN_BACKEND_ENV",
    "SCAN_BACKENDS",
    "ScanBackendUnavailable",
    "causal_conv1d",
    "cuda_scan_available",
    "resolve_scan_backend",
    "selective_scan",
    "selective_scan_reference",
    "selective_scan_torch",
]

"""Neural-network modules: the bidirectional Mamba mixer and its residual block."""

from .bimamba import BACKWARD_ORDERS, BiMambaMixer, TokenLayout
from .block import DropPath, MambaBlock, RMSNorm

__all__ = ["BACKWARD_ORDERS", "BiMambaMixer", "DropPath", "MambaBlock", "RMSNorm", "TokenLayout"]

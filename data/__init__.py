"""Video decoding, frame sampling, transforms, segmentation and datasets (see docs/data.md).

Submodules are imported explicitly (``from data.clip import load_clip``); importing the
package itself loads nothing heavy.
"""

"""Internal: the low-level services training and analysis share (files, devices, torchrun ranks)."""

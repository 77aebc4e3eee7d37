"""Torch-free inference: load items, enhance, detect lines, recognise, parse into records.

Nothing here imports torch; the serving install is numpy + opencv + onnxruntime.
"""

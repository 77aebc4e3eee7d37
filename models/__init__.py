"""Network definitions, ONNX export, and the shipped ONNX models with their cards.

Importing this package does not import torch; the networks live in ``marktrace.models.networks``.
"""

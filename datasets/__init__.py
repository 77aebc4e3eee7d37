"""Marking data: the synthetic marking renderer, the dataset format and its tools."""

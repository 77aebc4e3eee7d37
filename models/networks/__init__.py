"""PyTorch network definitions of the marking models (needs the ``[train]`` extra)."""

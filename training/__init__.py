"""Training loops and recipes for the marking models (needs the ``[train]`` extra)."""

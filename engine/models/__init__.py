"""Model registry: built-in families, local checkpoints, Hub ids and entry points."""

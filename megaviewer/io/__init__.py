"""File formats at the edge: atomic writes and safetensors + JSON checkpoints (never pickle)."""

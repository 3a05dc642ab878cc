"""Pure, batched geometry: rotations, Procrustes alignment and mesh-recovery metrics."""

"""Off-screen rendering (no window, no X server needed): mesh overlays on photos, side views, heatmaps."""

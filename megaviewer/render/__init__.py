"""Pictures of meshes without a window: the software rasteriser (overlays, thumbnails) and VTK side views
and heatmaps (``offscreen``)."""

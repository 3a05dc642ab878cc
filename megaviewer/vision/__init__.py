"""Seeing people in photos, videos and camera streams: image loading, frame sources, the offline pose
detector and the detect -> recover pipeline. Qt-free; heavy imports (mediapipe, OpenCV) happen on use."""

"""Training package for MEGA: the generic resumable/DDP training loop and the per-model trainers.

Why a separate top-level package: the desktop app and inference engine (``megaviewer``) must not depend on
training-only code (TensorBoard, data pipelines), while trainers reuse ``megaviewer``'s models and
checkpoint format so a trained model loads in the app unchanged.
"""

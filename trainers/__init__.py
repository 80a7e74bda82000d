"""Accelerate training loops, evaluation, the shared ranking metrics and the main job."""

"""The engine every trainer runs on: the one Accelerate training loop (:mod:`.loop`), its exact-resume
checkpoints without pickle (:mod:`.checkpoints`) and the accelerator / optimiser / data-loader set-up
(:mod:`.accelerator`). Nothing here knows a model family."""

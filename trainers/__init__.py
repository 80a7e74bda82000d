"""Training, evaluation and the jobs the CLI runs, in rooms by role (each imports only the rooms above it):

- ``engine/``      the one Accelerate training loop, exact-resume checkpoints, accelerator set-up
- ``evaluation/``  ranking metrics and the evaluation of a recommender on a dataset split
- ``stages/``      one trainer per stage: Stage I, quantize, RQ-VAE, Stage II, weight transfer, transition prior
- ``ttds/``        the TTDS LLM path: arguments, data, prompts, dynamic codes, trainer, recommender
- ``jobs/``        what the CLI calls: profiles, fingerprints + ledger, the main job, fine-tuning, push, loaders
- ``analysis/``    studies of trained models: modality balance, Shapley values
"""

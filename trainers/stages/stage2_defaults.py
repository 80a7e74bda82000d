"""The paper's Stage II recipe (UNGER §4.1.3, Table 4): the one home of these defaults.

``train_stage2``, the ``genrec train`` CLI and the main job's ``paper`` profile read them from here; the module
imports nothing, so the CLI can show them in ``--help`` without importing torch.
"""

PAPER_MAX_STEPS = 20000
PAPER_WARMUP_STEPS = 2000
PAPER_BATCH_SIZE = 256
PAPER_LR = 1e-3

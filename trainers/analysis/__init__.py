"""Studies of trained models: how much each modality contributes (:mod:`.modality_balance` for Stage I's
integrated embeddings, :mod:`.shapley` for MSCGRec's modalities)."""

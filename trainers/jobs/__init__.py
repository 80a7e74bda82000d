"""What the command line calls, and nothing else: the main job (:mod:`.run`, its profiles :mod:`.profiles`,
the MSCGRec variant :mod:`.run_mscgrec`, the transition-prior step :mod:`.transition`), stage fingerprints and
the ledger that reuses finished stages (:mod:`.fingerprints`, :mod:`.ledger`), fine-tuning (:mod:`.finetune`),
the TTDS job (:mod:`.ttds`), pushing to the Hub (:mod:`.push`), :func:`.load.load_recommender`, the one
loader of a trained recommender of any family, and :mod:`.verbs`: one function per ``genrec`` verb, which the
CLI modules (``genrec/commands/<verb>.py``) call and print."""

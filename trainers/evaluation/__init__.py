"""Ranking metrics (:mod:`.metrics`: one implementation of Recall/HR, NDCG, MRR at K) and the evaluation of a
trained recommender on a dataset split (:mod:`.evaluator`); :mod:`.metric_loader` loads the same metrics as an
``evaluate`` metric (:mod:`.genrec_ranking`)."""

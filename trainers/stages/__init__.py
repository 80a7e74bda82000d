"""One trainer per stage of the main job, each plugged into :mod:`genrec.trainers.engine`: Stage I
(:mod:`.stage1`), quantization (:mod:`.quantize`, with the RQ-VAE trainer :mod:`.rqvae`), Stage II
(:mod:`.stage2`, its paper defaults :mod:`.stage2_defaults`), the weight transfer that starts a Stage II from a
trained model (:mod:`.weight_transfer`) and the transition prior (:mod:`.transition_prior`)."""

"""Dataset builders: raw interactions + item text -> genrec datasets in the Hub layout, and helpers.

``prepare`` (the ``genrec prepare`` verb) reads a source (``movielens``, ``s3rec``, ``amazon``, or a
dataset already in the layout), splits it leave-one-out (``splits``) and writes the parquet + card
folder that ``push_to_hub`` would write (``hub_layout``); ``embeddings`` turns item text into vectors.
Submodules are imported on demand, so importing this package stays cheap.
"""

"""Training: the gate (:mod:`fraudlab.train.gate`) and one run end to end (:mod:`fraudlab.train.run`).

The pipeline, the split, the search and the metrics they use are in :mod:`fraudlab.train.pipeline`, :mod:`fraudlab.train.split`, :mod:`fraudlab.train.search` and :mod:`fraudlab.train.metrics`.
"""

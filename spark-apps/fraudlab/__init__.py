"""fraudlab: the shared Spark code of the fraud lab.

Every spark-submit app in ``spark-apps/`` is a thin caller of this package: the
schemas, the parsing and validation rules, the feature definitions, the model
pipeline, the rule signals and the report aggregations live here, once.
"""

__version__ = "0.1.0"

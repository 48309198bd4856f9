"""What the lab's notebooks compute and draw, kept out of their cells so it is tested once (``tests/notebooks/``).

``notebooks/01_explore_transactions.ipynb``, ``02_model_analysis.ipynb`` and
``03_streaming_inspection.ipynb`` are thin: a parameters cell, then calls by
module (``tables.overview(...)``, ``figures.steps_figure(...)``) into

* :mod:`fraudlab.notebook.tables`: the Spark tables (lazy ``DataFrame -> DataFrame``
  transforms: overview, fraud rates, bins, quantiles, worst errors) and their bin edges;
* :mod:`fraudlab.notebook.summaries`: pandas summaries of collected model figures
  (alerts per day against recall, operating point, recall levels, drift table, feature weights);
* :mod:`fraudlab.notebook.figures`: matplotlib figures of collected tables;
* :mod:`fraudlab.notebook.live`: reads of the stream's Cassandra tables and Kafka topics
  (latest alerts, topic tail, per-minute throughput);

and into :mod:`fraudlab.train`, :mod:`fraudlab.features`, :mod:`fraudlab.registry`.
"""

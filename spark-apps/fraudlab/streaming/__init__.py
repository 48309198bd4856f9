"""The streaming path: ``stream_csv_to_kafka.py`` replays transactions into Kafka, ``classify_stream.py``
scores them into Cassandra and sends alerts and dead letters back to Kafka.

A module per step, so each says by its name what it touches:

* :mod:`~fraudlab.streaming.codec`: the Kafka messages: transactions out of prepared rows and
  back in, validated by the preparation rules; dead letters with their reason and original bytes;
* :mod:`~fraudlab.streaming.history`: a micro-batch's customer-history features, from the history
  the stream keeps in Cassandra plus the batch, through :mod:`fraudlab.features`' one definition;
* :mod:`~fraudlab.streaming.alerts`: scoring (the batch scorer's model and rules), the alert
  decision, alert messages and the Cassandra rows;
* :mod:`~fraudlab.streaming.sink`: Cassandra I/O of the classifier (cassandra-driver on the
  driver: Spark 4 has no Cassandra connector), the writes and the history reads;
* :mod:`~fraudlab.streaming.delivery`: the alerts and dead letters of a batch in one Kafka
  transaction that records the batch, so each is delivered once across crashes; the failpoints;
* :mod:`~fraudlab.streaming.batch`: one micro-batch, chaining the above (``foreachBatch``): two
  Spark jobs, the Cassandra and Kafka writes from the driver;
* :mod:`~fraudlab.streaming.progress`: per-batch figures and latency percentiles, graceful stop;
* :mod:`~fraudlab.streaming.replay`: the replay's event order, pacing and paced sending;
* :mod:`~fraudlab.streaming.check`: the streaming DAG's verdict on what a run sent.

codec, history and alerts are pure DataFrame functions, batch or streaming alike: the tests run
them on static DataFrames of Kafka-shaped rows.
"""

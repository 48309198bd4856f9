"""Tests of the streaming part: logic on static DataFrames, and end to end against real Kafka and Cassandra."""

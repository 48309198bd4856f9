"""Docker-free lab services: real Kafka and Cassandra as plain JVM processes.

See :mod:`services.runner` (``python -m services.runner --help``).
"""

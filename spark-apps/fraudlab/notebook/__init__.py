"""What the notebooks call (:mod:`.helpers`): transforms to pandas, figures, and reads of Kafka and Cassandra.

The notebooks' cells only call these functions, so the same code is tested in ``tests/notebooks/``.
"""

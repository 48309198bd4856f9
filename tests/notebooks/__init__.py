"""Notebook tests: the three notebooks executed headless, and the :mod:`fraudlab.notebook` modules they call.

Inline data more than one test module uses lives here.
"""

TABLE = [  # threshold_table rows: threshold falling, recall rising
    {"threshold": 0.9, "precision": 1.0, "recall": 0.25, "f1": 0.4, "flagged": 1, "true_positives": 1},
    {"threshold": 0.5, "precision": 0.6, "recall": 0.75, "f1": 0.67, "flagged": 5, "true_positives": 3},
    {"threshold": 0.4, "precision": 0.5, "recall": 0.75, "f1": 0.6, "flagged": 6, "true_positives": 3},
    {"threshold": 0.1, "precision": 0.2, "recall": 1.0, "f1": 0.33, "flagged": 20, "true_positives": 4},
]

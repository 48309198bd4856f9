"""The temporal split: the model is tested on later steps than it was trained on.

The decision threshold is chosen on a validation slice of the training steps
(:func:`fraudlab.train.metrics.choose_threshold`), never on test. Each function here runs a small
Spark job or none.
"""

from __future__ import annotations

import math

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

#: Share of the step range that :func:`default_split_step` leaves to the later slice.
DEFAULT_HOLDOUT_SHARE = 0.2


def step_range(df: DataFrame) -> tuple[int, int]:
    """Smallest and largest ``step`` of ``df`` (an action)."""
    row = df.agg(F.min("step").alias("lo"), F.max("step").alias("hi")).first()
    if row is None or row["lo"] is None:
        raise ValueError("no rows: cannot split by step")
    return int(row["lo"]), int(row["hi"])


def default_split_step(min_step: int, max_step: int, holdout_share: float = DEFAULT_HOLDOUT_SHARE) -> int:
    """First step of the later slice: the last ``holdout_share`` of the step range.

    ``min + (1 - share) * (max - min + 1)``, rounded; 144 for BankSim's steps 0..179.
    Both slices keep at least one step when the range has two or more.
    """
    if max_step < min_step:
        raise ValueError(f"empty step range {min_step}..{max_step}")
    split = int(math.floor(min_step + (1.0 - holdout_share) * (max_step - min_step + 1) + 0.5))
    return max(min_step + 1, min(split, max_step)) if max_step > min_step else max_step


def temporal_split(df: DataFrame, split_step: int) -> tuple[DataFrame, DataFrame]:
    """``(earlier, later)``: rows with ``step < split_step`` and rows with ``step >= split_step``."""
    is_later = F.col("step") >= F.lit(split_step)
    return df.where(~is_later), df.where(is_later)

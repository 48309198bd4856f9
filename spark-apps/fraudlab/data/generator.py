"""Synthetic BankSim transactions with the statistics of the public file.

The real ``bs140513_032310.csv`` cannot be downloaded here, so the lab writes
its own copy in the same format (:mod:`fraudlab.data.banksim`). Pure Python and numpy,
no Spark: tests and apps call :func:`generate` for columnar data,
:func:`write_csv` to write it, and :func:`write_sample` for a small input file.

How a file is built (every random draw comes from one ``numpy`` generator
seeded with ``seed``, so the same ``rows`` and ``seed`` give the same bytes):

1. **Plan.** ``rows`` fixes everything else in proportion to the public file
   (:func:`plan`): customers (4,112 at full size), frauds (7,200, spread evenly,
   so exactly 40 per step at full size) and rows per step, proportional to
   ``2703 + 6.71 * step``. There are 180 steps whenever ``rows >= 180``; a
   smaller file gets ``rows`` steps of one row each.
2. **Customers.** Each customer gets a first step (half on step 0, about 90 %
   by step 16) and an activity rate. Each step's rows are shared among the
   customers already active in proportion to their rate, by systematic
   rounding (a customer pays on its first step), so most customers make about
   one payment per step.
3. **Age and gender.** Fixed per customer, with customer counts in proportion
   to the row shares of the age and gender tables; enterprises ('E') always
   have age 'U'. Customers are spread over the groups evenly along their
   transaction counts, so row shares follow customer shares closely.
4. **Frauds.** Some customers are victims (occasional payers more often); a
   victim's intensity is gamma-distributed, a few victims lose many payments.
   Each step's frauds are drawn without replacement from its rows with weights
   intensity x age factor x gender factor, and the factors are raked until the
   fraud counts per age and per gender match the tables. About 1,480 customers
   end up with a fraud at full size.
5. **Merchants.** Fraud rows take the per-merchant fraud counts of the table,
   legitimate rows the remaining per-merchant rows (exact at full size; from
   1,000 legitimate rows on, every merchant keeps at least one row).
   Legitimate rows are matched to merchants through a customer "taste" so a
   customer visits about a dozen merchants rather than all of them.
6. **Amounts.** Inverse-CDF sampling, per category and label, by linear
   interpolation through p0/p10/p25/p50/p75/p90/p99/max; amounts are rounded
   to cents and redrawn until no (customer, merchant, amount, step) repeats.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fraudlab.data.banksim import (
    AGES,
    BANKSIM_COLUMNS,
    CATEGORIES,
    FULL_ROWS,
    GENDERS,
    MERCHANTS,
    N_STEPS,
    WITH_ID_COLUMNS,
    ZIPCODE,
)
from fraudlab.config import DEFAULT_START_DATE

#: The default seed (the public file's date stamp), so a plain run is reproducible.
DEFAULT_SEED = 140_513
#: Rows of the small file :func:`write_sample` writes for other tests.
SAMPLE_ROWS = 5_000
VARIANTS: tuple[str, ...] = ("banksim", "with-id")

# Reference figures of the public file that only the generator needs (BANKSIM.md).
FULL_FRAUDS = 7_200
FULL_CUSTOMERS = 4_112
FULL_FRAUD_CUSTOMERS = 1_483
ROWS_PER_STEP_INTERCEPT = 2_703.0
ROWS_PER_STEP_SLOPE = 6.71
MAX_AMOUNT = 8_329.96

#: gender -> (rows, frauds)
GENDER_TABLE: dict[str, tuple[int, int]] = {
    "F": (324_565, 4_758),
    "M": (268_385, 2_435),
    "E": (1_178, 7),
    "U": (515, 0),
}

#: age -> (rows, frauds); age 'U' is exactly the enterprises (gender 'E').
AGE_TABLE: dict[str, tuple[int, int]] = {
    "0": (2_452, 48),
    "1": (58_131, 689),
    "2": (187_310, 2_344),
    "3": (147_131, 1_755),
    "4": (109_025, 1_410),
    "5": (62_642, 686),
    "6": (26_774, 261),
    "U": (1_178, 7),
}

#: Probabilities of the amount quantile table (p0 and max are the ends of the support).
AMOUNT_PROBS: tuple[float, ...] = (0.0, 0.10, 0.25, 0.50, 0.75, 0.90, 0.99, 1.0)

#: (category, fraud) -> amount p10, p25, p50, p75, p90, p99 of the public file.
#: Categories without a fraud row have no frauds.
AMOUNT_QUANTILES: dict[tuple[str, int], tuple[float, ...]] = {
    ("es_barsandrestaurants", 0): (6.65, 16.88, 35.80, 60.33, 83.40, 121.31),
    ("es_barsandrestaurants", 1): (33.60, 62.88, 135.96, 218.51, 336.42, 637.14),
    ("es_contents", 0): (6.44, 17.50, 38.43, 65.20, 88.98, 137.43),
    ("es_fashion", 0): (10.44, 26.41, 54.87, 89.98, 124.94, 185.85),
    ("es_fashion", 1): (32.98, 119.42, 224.68, 349.42, 511.14, 698.23),
    ("es_food", 0): (6.62, 16.96, 33.47, 53.51, 72.03, 103.54),
    ("es_health", 0): (16.57, 41.64, 89.11, 151.01, 211.68, 321.19),
    ("es_health", 1): (63.50, 164.30, 353.36, 585.69, 815.92, 1289.58),
    ("es_home", 0): (20.47, 48.18, 97.71, 159.95, 224.23, 354.69),
    ("es_home", 1): (95.25, 204.16, 391.67, 653.40, 952.03, 1314.21),
    ("es_hotelservices", 0): (19.16, 49.00, 100.38, 154.28, 200.92, 291.78),
    ("es_hotelservices", 1): (66.70, 193.12, 382.49, 616.06, 837.41, 1177.29),
    ("es_hyper", 0): (7.28, 17.45, 35.42, 57.86, 79.57, 117.08),
    ("es_hyper", 1): (29.40, 67.74, 163.78, 241.89, 331.50, 439.66),
    ("es_leisure", 0): (46.64, 58.86, 73.31, 86.65, 99.19, 119.23),
    ("es_leisure", 1): (190.00, 245.10, 300.59, 357.04, 402.73, 481.48),
    ("es_otherservices", 0): (11.75, 30.08, 65.80, 111.54, 152.02, 220.52),
    ("es_otherservices", 1): (64.20, 150.95, 272.18, 436.39, 637.00, 897.59),
    ("es_sportsandtoys", 0): (13.77, 36.01, 78.74, 129.70, 180.20, 250.86),
    ("es_sportsandtoys", 1): (60.41, 150.30, 311.42, 507.07, 676.74, 1000.64),
    ("es_tech", 0): (15.68, 41.07, 84.22, 146.87, 202.59, 300.98),
    ("es_tech", 1): (87.46, 203.82, 364.43, 583.24, 782.32, 1047.96),
    ("es_transportation", 0): (5.20, 12.80, 24.96, 38.64, 51.19, 72.94),
    ("es_travel", 0): (71.33, 272.35, 601.88, 918.91, 1312.02, 1974.59),
    ("es_travel", 1): (501.13, 1276.52, 2432.65, 3898.56, 5081.71, 7166.13),
    ("es_wellnessandbeauty", 0): (9.28, 24.26, 49.96, 82.49, 115.68, 175.90),
    ("es_wellnessandbeauty", 1): (32.43, 90.47, 198.32, 338.47, 469.96, 645.86),
}

# Model parameters, tuned so the customer figures of BANKSIM.md come out (the tests check them).
# Activity: when customers start and how often they pay.
_START_SHARES = (0.50, 0.41, 0.09)  # start on step 0, on steps 1..16 (geometric), later (uniform)
_START_EARLY_MEAN = 3.0
_RATE_SPREAD = 0.03  # regular customers pay about once a day, rate ~ N(1, 0.03)
_CASUAL_SHARE = 0.28  # customers paying on fewer days ...
_CASUAL_RATE = (0.35, 0.85)  # ... with a uniform rate in this range
_BUSY_SHARE = 0.01  # customers paying more than once a day ...
_BUSY_RATE = (1.2, 1.45)
# Frauds: who is defrauded and how much.
_VICTIM_SHARE = 0.46  # customers who can be defrauded; some draw no fraud
_VICTIM_LOW_ACTIVITY_BIAS = 2.0  # victims are picked with weight rows ** -bias
_VICTIM_SHAPE = 5.0  # gamma shape of a victim's intensity
_HEAVY_VICTIM_SHARE = 0.15  # victims hit much harder ...
_HEAVY_VICTIM_FACTOR = 12.0  # ... by this factor
_VICTIM_ACTIVITY_EXPONENT = 1.0  # a victim's weight per payment is intensity / rows ** exponent
_RAKING_ROUNDS = 6
# Merchants and amounts.
_MERCHANT_TASTE = 0.16  # spread of a merchant's rows around its place on the taste circle
_REDRAW_ROUNDS = 20  # rounds of redrawing repeated amounts before giving up


@dataclass(frozen=True, eq=False)
class Plan:
    """Sizes of a generated file, all derived from its row count."""

    rows: int
    steps: int
    customers: int
    frauds: int
    rows_per_step: np.ndarray
    frauds_per_step: np.ndarray


def _apportion(total: int, weights: np.ndarray, minimum: int = 0) -> np.ndarray:
    """Split ``total`` into integers proportional to ``weights`` (largest remainder).

    When ``total`` allows it, parts whose share is below ``minimum`` get ``minimum``
    and the others share the rest, so large totals split exactly by weight.
    """
    weights = np.asarray(weights, dtype=float)
    if total <= 0 or weights.sum() <= 0:
        return np.zeros(len(weights), dtype=np.int64)
    if minimum and total >= minimum * len(weights):
        lifted = total * weights / weights.sum() < minimum
        if lifted.any():
            parts = np.full(len(weights), minimum, dtype=np.int64)
            parts[~lifted] = _apportion(total - minimum * int(lifted.sum()), weights[~lifted], minimum)
            return parts
    exact = total * weights / weights.sum()
    parts = np.floor(exact).astype(np.int64)
    short = total - int(parts.sum())
    # ties go to the earlier part, so the split is deterministic
    order = np.argsort(-(exact - parts), kind="stable")
    parts[order[:short]] += 1
    return parts


def _spread_evenly(total: int, slots: int) -> np.ndarray:
    """``total`` items over ``slots`` slots, the remainder on evenly spaced slots."""
    counts = np.full(slots, total // slots, dtype=np.int64)
    extra = total - int(counts.sum())
    if extra:
        counts[((np.arange(extra) + 0.5) * slots / extra).astype(np.int64)] += 1
    return counts


def plan(rows: int = FULL_ROWS) -> Plan:
    """Scale the public file's sizes to ``rows`` rows.

    Customers and frauds scale in proportion (at least one of each; at least one
    fraud from two rows on, so both labels exist). There are 180 steps when
    ``rows >= 180`` and ``rows`` steps otherwise; every step has a row.
    """
    if rows < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    scale = rows / FULL_ROWS
    steps = min(N_STEPS, rows)
    trend = ROWS_PER_STEP_INTERCEPT + ROWS_PER_STEP_SLOPE * np.arange(steps)
    rows_per_step = _apportion(rows, trend, minimum=1)
    frauds = min(rows - 1, max(1, round(FULL_FRAUDS * scale))) if rows >= 2 else 0
    frauds_per_step = np.minimum(_spread_evenly(frauds, steps), rows_per_step)
    return Plan(
        rows=rows,
        steps=steps,
        customers=max(1, round(FULL_CUSTOMERS * scale)),
        frauds=int(frauds_per_step.sum()),
        rows_per_step=rows_per_step,
        frauds_per_step=frauds_per_step,
    )


def _customer_activity(rng: np.random.Generator, n: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """First step and activity rate of each customer."""
    kind = rng.permutation(np.repeat([0, 1, 2], _apportion(n, np.array(_START_SHARES))))
    early = np.minimum(rng.geometric(1 / _START_EARLY_MEAN, n), 16)
    late = rng.integers(17, max(18, steps), n)
    start = np.choose(kind, [np.zeros(n, dtype=np.int64), early, late])
    start = np.minimum(start, steps - 1)
    start[np.argmin(start)] = 0  # somebody pays on step 0
    # most customers pay about once a day; some are less regular, a few pay more often
    rate = rng.normal(1.0, _RATE_SPREAD, n)
    casual = rng.random(n) < _CASUAL_SHARE
    rate[casual] = rng.uniform(*_CASUAL_RATE, int(casual.sum()))
    busy = rng.random(n) < _BUSY_SHARE
    rate[busy] = rng.uniform(*_BUSY_RATE, int(busy.sum()))
    return start, np.clip(rate, 0.05, None)


def _allocate_rows(
    rng: np.random.Generator, p: Plan, start: np.ndarray, rate: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Share each step's rows among the active customers; returns (step, customer) per row."""
    steps, customers = [], []
    for step, n_rows in enumerate(p.rows_per_step.tolist()):
        active = np.flatnonzero(start <= step)
        active = active[rng.permutation(len(active))]
        expected = rate[active] * (n_rows / rate[active].sum())
        # a customer pays on its first step even when its rate is low
        newcomer = start[active] == step
        for _ in range(3 if newcomer.sum() <= n_rows else 0):
            low = newcomer & (expected < 1)
            if not low.any() or low.all():
                break
            expected[low] = 1.0
            expected[~low] *= (n_rows - low.sum()) / expected[~low].sum()
        cumulative = np.cumsum(expected)
        cumulative[-1] = n_rows
        # systematic rounding: each customer gets the floor or the ceiling of its share
        edges = np.floor(cumulative + rng.random()).astype(np.int64)
        counts = np.diff(edges, prepend=0)
        customers.append(np.repeat(active, counts))
        steps.append(np.full(n_rows, step, dtype=np.int64))
    return np.concatenate(steps), np.concatenate(customers)


def _spread_labels(rng: np.random.Generator, counts: np.ndarray) -> np.ndarray:
    """Labels ``0..k-1`` repeated ``counts`` times, each label spread evenly along the result."""
    labels = np.repeat(np.arange(len(counts)), counts)
    within = np.concatenate([np.arange(c) for c in counts]) if len(labels) else labels
    # the middle of each member's slot; the tiny jitter only breaks ties at random
    position = (within + 0.5 + 1e-6 * rng.random(len(labels))) / np.repeat(np.maximum(counts, 1), counts)
    return labels[np.argsort(position, kind="stable")]


def _customer_groups(
    rng: np.random.Generator, n_customers: int, rows_per_customer: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Age and gender index of each customer (into AGES and GENDERS).

    Customer counts follow the tables' row shares. Genders are dealt out along the
    customers ordered by transaction count, then ages along each gender's
    members, so even a group of a few customers gets a typical mix of busy and
    occasional payers and its row share stays close to its customer share.
    """
    by_activity = np.lexsort((rng.random(n_customers), rows_per_customer))
    gender_rows = np.array([GENDER_TABLE[g][0] for g in GENDERS], dtype=float)
    gender = np.empty(n_customers, dtype=np.int64)
    gender[by_activity] = _spread_labels(rng, _apportion(n_customers, gender_rows))

    person_ages = np.array([AGES.index(a) for a in AGES if a != "U"])
    age_rows = np.array([AGE_TABLE[AGES[a]][0] for a in person_ages], dtype=float)
    age = np.full(n_customers, AGES.index("U"), dtype=np.int64)  # enterprises have no age
    for gi, g in enumerate(GENDERS):
        if g == "E":
            continue
        members = by_activity[gender[by_activity] == gi]  # still in activity order
        age[members] = person_ages[_spread_labels(rng, _apportion(len(members), age_rows))]
    return age, gender


def _pick_frauds(
    step: np.ndarray, weight: np.ndarray, noise: np.ndarray, frauds_per_step: np.ndarray
) -> np.ndarray:
    """Boolean fraud flag: per step, the rows with the largest log(weight) + Gumbel noise.

    This draws ``frauds_per_step[s]`` rows of step ``s`` without replacement with
    probabilities proportional to ``weight``; zero-weight rows only fill up a step
    that has too few weighted rows. ``step`` must be sorted.
    """
    with np.errstate(divide="ignore"):
        key = np.where(weight > 0, np.log(weight), -1e6) + noise
    order = np.lexsort((-key, step))
    first_row = np.searchsorted(step, np.arange(len(frauds_per_step)))
    rank = np.arange(len(step)) - first_row[step[order]]
    fraud = np.zeros(len(step), dtype=bool)
    fraud[order] = rank < frauds_per_step[step[order]]
    return fraud


def _assign_frauds(
    rng: np.random.Generator,
    p: Plan,
    step: np.ndarray,
    customer: np.ndarray,
    age: np.ndarray,
    gender: np.ndarray,
) -> np.ndarray:
    """Fraud flag per row: victims' rows, with age/gender fractions raked to the tables."""
    n_customers = len(age)
    rows_per_customer = np.maximum(np.bincount(customer, minlength=n_customers), 1)
    intensity = np.zeros(n_customers)
    for gi, g in enumerate(GENDERS):
        members = np.flatnonzero(gender == gi)
        expected = p.frauds * GENDER_TABLE[g][1] / FULL_FRAUDS
        if len(members) == 0 or expected == 0:
            continue
        n_victims = min(len(members), max(1, round(_VICTIM_SHARE * len(members))))
        # occasional payers are likelier victims
        pick = rows_per_customer[members] ** -_VICTIM_LOW_ACTIVITY_BIAS
        victims = rng.choice(members, n_victims, replace=False, p=pick / pick.sum())
        # most victims lose a few payments, some lose many
        heavy = rng.random(n_victims) < _HEAVY_VICTIM_SHARE
        intensity[victims] = rng.gamma(_VICTIM_SHAPE, 1.0, n_victims) * np.where(heavy, _HEAVY_VICTIM_FACTOR, 1.0)
    # per payment, customers who pay rarely are hit harder (a stolen card is used a few times)
    intensity /= rows_per_customer**_VICTIM_ACTIVITY_EXPONENT

    age_target = np.array([AGE_TABLE[a][1] for a in AGES], dtype=float)
    gender_target = np.array([GENDER_TABLE[g][1] for g in GENDERS], dtype=float)
    age_factor = np.ones(len(AGES))
    gender_factor = np.ones(len(GENDERS))
    row_age, row_gender = age[customer], gender[customer]
    noise = rng.gumbel(size=len(step))
    fraud = np.zeros(len(step), dtype=bool)
    for _ in range(_RAKING_ROUNDS):
        weight = intensity[customer] * age_factor[row_age] * gender_factor[row_gender]
        fraud = _pick_frauds(step, weight, noise, p.frauds_per_step)
        # rake: scale each group's factor by target share / realised share
        for factor, groups, target in ((age_factor, row_age, age_target), (gender_factor, row_gender, gender_target)):
            got = np.bincount(groups[fraud], minlength=len(target)) / max(1, fraud.sum())
            want = target / target.sum()
            ratio = np.where(got > 0, want / np.maximum(got, 1e-12), np.where(want > 0, 2.0, 1.0))
            factor *= np.sqrt(ratio)  # damped: enterprises are both a gender and an age
    return fraud


def _assign_merchants(
    rng: np.random.Generator, fraud: np.ndarray, customer: np.ndarray, n_customers: int
) -> np.ndarray:
    """Merchant index per row (into MERCHANTS), with the table's per-merchant rows and frauds.

    Fraud rows take the frauds' merchant mix at random. Legitimate rows are matched
    to merchants by rank on a "taste circle": each customer sits at a random point,
    each merchant's rows around its own point (the transport merchants, which
    everybody uses, all around). A customer then sees mostly the merchants near
    them, as real customers stick to a dozen shops.
    """
    info = list(MERCHANTS.values())
    merchant = np.empty(len(fraud), dtype=np.int64)
    fraud_rows = np.flatnonzero(fraud)
    fraud_counts = _apportion(len(fraud_rows), np.array([m[2] for m in info], dtype=float))
    merchant[fraud_rows] = rng.permutation(np.repeat(np.arange(len(info)), fraud_counts))

    legit_rows = np.flatnonzero(~fraud)
    legit_weights = np.array([m[1] - m[2] for m in info], dtype=float)
    minimum = 1 if len(legit_rows) >= 20 * len(info) else 0  # every merchant appears
    legit_counts = _apportion(len(legit_rows), legit_weights, minimum=minimum)
    labels = np.repeat(np.arange(len(info)), legit_counts)
    everywhere = np.array([m[0] == "es_transportation" for m in info])
    centre = rng.random(len(info))
    label_key = np.where(
        everywhere[labels],
        rng.random(len(labels)),
        (centre[labels] + _MERCHANT_TASTE * rng.standard_normal(len(labels))) % 1.0,
    )
    taste = rng.random(n_customers)
    row_key = taste[customer[legit_rows]]
    row_order = np.lexsort((rng.random(len(legit_rows)), row_key))
    merchant[legit_rows[row_order]] = labels[np.argsort(label_key, kind="stable")]
    return merchant


def _amount_table() -> np.ndarray:
    """Quantiles at AMOUNT_PROBS per (category index * 2 + fraud); NaN where there are none.

    The table gives p10..p99. Assumed ends: p0 is 0.00 for legitimate payments
    (the public file has 52 zero amounts) and p10 / 5 for frauds; the maximum is
    p99 + (p99 - p90), capped at the file's maximum 8,329.96 (reached by travel frauds).
    """
    table = np.full((2 * len(CATEGORIES), len(AMOUNT_PROBS)), np.nan)
    for (category, label), q in AMOUNT_QUANTILES.items():
        low = 0.0 if label == 0 else round(q[0] / 5, 2)
        high = min(MAX_AMOUNT, round(q[-1] + (q[-1] - q[-2]), 2))
        table[2 * CATEGORIES.index(category) + label] = (low, *q, high)
    return table


def _draw_cents(rng: np.random.Generator, group: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Amounts in cents by inverse-CDF sampling, stratified within each group.

    Uniforms are spread evenly over (0, 1) within each (category, label) group, so
    even small groups hit their quantiles closely.
    """
    n = len(group)
    order = np.lexsort((rng.random(n), group))
    sizes = np.bincount(group, minlength=len(table))
    first = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - first[group[order]]
    u = (rank + rng.random(n)) / sizes[group]
    return _inverse_cdf_cents(u, group, table)


def _inverse_cdf_cents(u: np.ndarray, group: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Piecewise-linear inverse CDF through the group's quantiles, rounded to cents."""
    probs = np.asarray(AMOUNT_PROBS)
    segment = np.clip(np.searchsorted(probs, u, side="right") - 1, 0, len(probs) - 2)
    lo, hi = table[group, segment], table[group, segment + 1]
    share = (u - probs[segment]) / (probs[segment + 1] - probs[segment])
    amount = lo + share * (hi - lo)
    if np.isnan(amount).any():
        raise ValueError("a row fell in a (category, label) without an amount distribution")
    return np.floor(amount * 100 + 0.5).astype(np.int64)


def _redraw_repeats(
    rng: np.random.Generator,
    cents: np.ndarray,
    group: np.ndarray,
    table: np.ndarray,
    customer: np.ndarray,
    merchant: np.ndarray,
    step: np.ndarray,
) -> np.ndarray:
    """Redraw amounts until no (customer, merchant, amount, step) appears twice."""
    top = int(round(MAX_AMOUNT * 100)) + 1
    base = (customer * len(MERCHANTS) + merchant) * (int(step.max()) + 1) + step
    for _ in range(_REDRAW_ROUNDS):
        key = base * top + cents
        order = np.argsort(key, kind="stable")
        repeated = order[1:][key[order][1:] == key[order][:-1]]
        if len(repeated) == 0:
            return cents
        cents[repeated] = _inverse_cdf_cents(rng.random(len(repeated)), group[repeated], table)
    raise RuntimeError("could not make (customer, merchant, amount, step) unique")


def generate(rows: int = FULL_ROWS, seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """BankSim-like transactions: one row per payment, columns BANKSIM_COLUMNS, sorted by step.

    Text columns hold the values without quotes; ``step`` and ``fraud`` are
    integers, ``amount`` a float with two decimals. Same ``rows`` and ``seed``,
    same data.
    """
    p = plan(rows)
    rng = np.random.default_rng(seed)
    start, rate = _customer_activity(rng, p.customers, p.steps)
    step, customer = _allocate_rows(rng, p, start, rate)
    age, gender = _customer_groups(rng, p.customers, np.bincount(customer, minlength=p.customers))
    fraud = _assign_frauds(rng, p, step, customer, age, gender)
    merchant = _assign_merchants(rng, fraud, customer, p.customers)

    category_of = np.array([CATEGORIES.index(m[0]) for m in MERCHANTS.values()])
    group = 2 * category_of[merchant] + fraud
    table = _amount_table()
    cents = _draw_cents(rng, group, table)
    cents = _redraw_repeats(rng, cents, group, table, customer, merchant, step)

    # the public file lists each step's payments in no particular order
    shuffled = rng.permutation(len(step))
    order = shuffled[np.argsort(step[shuffled], kind="stable")]
    step, customer, merchant, fraud, cents = (a[order] for a in (step, customer, merchant, fraud, cents))

    ids = rng.choice(2_000_000_000, p.customers, replace=False) + 10_000_000
    customer_names = np.array([f"C{i}" for i in ids.tolist()], dtype=object)
    merchant_names = np.array(list(MERCHANTS), dtype=object)
    return pd.DataFrame(
        {
            "step": step,
            "customer": customer_names[customer],
            "age": np.array(AGES, dtype=object)[age][customer],
            "gender": np.array(GENDERS, dtype=object)[gender][customer],
            "zipcodeOri": np.full(len(step), ZIPCODE, dtype=object),
            "merchant": merchant_names[merchant],
            "zipMerchant": np.full(len(step), ZIPCODE, dtype=object),
            "category": np.array(CATEGORIES, dtype=object)[category_of[merchant]],
            "amount": cents / 100,
            "fraud": fraud.astype(np.int64),
        },
        columns=list(BANKSIM_COLUMNS),
    )


def format_csv(data: pd.DataFrame, variant: str = "banksim", start_date: str = DEFAULT_START_DATE) -> str:
    """The CSV text of ``data`` as the public file writes it: quoted text, CRLF.

    ``variant="with-id"`` puts an unquoted row index ``id`` (from 0) and a ``date``
    (``YYYY-MM-DD HH:MM:SS``, step 0 = ``start_date``, one step per day) in front.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    columns = list(WITH_ID_COLUMNS if variant == "with-id" else BANKSIM_COLUMNS)
    # spelled out for speed: step, amount and fraud bare, the QUOTED_COLUMNS in single quotes
    lines = [
        f"{s},'{c}','{a}','{g}','{zo}','{m}','{zm}','{k}',{x:.2f},{f}"
        for s, c, a, g, zo, m, zm, k, x, f in zip(*(data[c].tolist() for c in BANKSIM_COLUMNS))
    ]
    if variant == "with-id":
        day0 = dt.datetime.fromisoformat(start_date)
        steps = data["step"].to_numpy()
        n_dates = int(steps.max()) + 1 if len(steps) else 0
        dates = [(day0 + dt.timedelta(days=s)).strftime("%Y-%m-%d %H:%M:%S") for s in range(n_dates)]
        lines = [f"{i},{dates[s]},{line}" for i, (s, line) in enumerate(zip(steps.tolist(), lines))]
    return "\r\n".join([",".join(columns), *lines]) + "\r\n"


def write_csv(
    data: pd.DataFrame, path: str | Path, variant: str = "banksim", start_date: str = DEFAULT_START_DATE
) -> Path:
    """Write ``data`` to ``path`` in one write (see :func:`format_csv`), creating parent folders."""
    path = Path(path)
    text = format_csv(data, variant, start_date)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("ascii"))
    return path


def write_sample(
    path: str | Path, rows: int = SAMPLE_ROWS, seed: int = DEFAULT_SEED, variant: str = "banksim"
) -> Path:
    """Generate ``rows`` rows and write them to ``path``: a quick input file for tests."""
    return write_csv(generate(rows, seed), path, variant)

"""The BankSim generator: format, determinism, scaling, and the public file's statistics.

The full-size data set is generated once per module (about 2 s) and every
statistic is checked against the public file's figures with the tolerance
written next to the assertion. Format checks run on small files in tmp_path.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudlab.data import banksim, generator
from fraudlab.data.banksim import AGES, BANKSIM_COLUMNS, CATEGORIES, MERCHANTS, WITH_ID_COLUMNS
from fraudlab.config import DEFAULT_START_DATE
from tests.conftest import run_python_app

APP = "generate_transactions.py"
SMALL_ROWS = 20_000
TEXT_COLUMNS = {c: str for c in banksim.QUOTED_COLUMNS}


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, quotechar="'", dtype=TEXT_COLUMNS)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _within(value: float, target: float, relative: float) -> bool:
    return abs(value - target) <= relative * abs(target)


@pytest.fixture(scope="module")
def full() -> pd.DataFrame:
    return generator.generate(banksim.FULL_ROWS, generator.DEFAULT_SEED)


@pytest.fixture(scope="module")
def per_customer(full: pd.DataFrame) -> pd.DataFrame:
    return full.groupby("customer").agg(
        rows=("fraud", "size"),
        frauds=("fraud", "sum"),
        first_step=("step", "min"),
        merchants=("merchant", "nunique"),
        ages=("age", "nunique"),
        genders=("gender", "nunique"),
    )


@pytest.fixture(scope="module")
def small_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("small") / "transactions.csv"
    return generator.write_sample(path, rows=SMALL_ROWS, seed=11)


# --- totals --------------------------------------------------------------------------------------


def test_full_size_has_the_public_files_totals(full: pd.DataFrame) -> None:
    # exact: 594,643 rows, 7,200 frauds, 4,112 customers, 50 merchants, 15 categories, steps 0..179
    assert list(full.columns) == list(BANKSIM_COLUMNS)
    assert len(full) == 594_643
    assert int(full["fraud"].sum()) == 7_200
    assert full["customer"].nunique() == 4_112
    assert set(full["merchant"]) == set(MERCHANTS)
    assert set(full["category"]) == set(CATEGORIES)
    assert sorted(full["step"].unique()) == list(range(180))


def test_every_step_has_exactly_40_frauds(full: pd.DataFrame) -> None:
    frauds = full.groupby("step")["fraud"].sum()
    assert (frauds == 40).all(), frauds[frauds != 40]


def test_rows_per_step_grow_linearly_like_the_public_file(full: pd.DataFrame) -> None:
    rows = full.groupby("step").size()
    slope, intercept = np.polyfit(rows.index, rows.to_numpy(), 1)
    assert _within(slope, 6.71, 0.05), slope  # slope within 5 %
    assert _within(intercept, 2703, 0.02), intercept  # intercept within 2 %


def test_temporal_split_has_the_public_counts(full: pd.DataFrame) -> None:
    train = full[full["step"] <= 143]
    assert int(train["fraud"].sum()) == 5_760  # exact: 40 per step
    assert _within(len(train), 461_412, 0.01)  # rows within 1 %


def test_rows_are_sorted_by_step(full: pd.DataFrame) -> None:
    assert full["step"].is_monotonic_increasing


# --- merchants and categories ---------------------------------------------------------------------


def test_each_merchant_sells_in_its_table_category(full: pd.DataFrame) -> None:
    pairs = full[["merchant", "category"]].drop_duplicates()
    assert len(pairs) == 50
    assert dict(zip(pairs["merchant"], pairs["category"])) == banksim.MERCHANT_CATEGORY


def test_rows_and_frauds_per_merchant_match_the_table(full: pd.DataFrame) -> None:
    # exact at full size: the generator deals out the table's counts
    got = full.groupby("merchant")["fraud"].agg(["size", "sum"])
    for merchant, (_, rows, frauds, _) in MERCHANTS.items():
        assert (got.loc[merchant, "size"], got.loc[merchant, "sum"]) == (rows, frauds), merchant


def _category_table() -> pd.DataFrame:
    table = pd.DataFrame(
        [(c, r, f) for c, r, f, _ in MERCHANTS.values()], columns=["category", "rows", "frauds"]
    )
    return table.groupby("category").sum()


@pytest.mark.parametrize("category", CATEGORIES)
def test_category_row_share_matches_the_table(full: pd.DataFrame, category: str) -> None:
    want = _category_table().loc[category, "rows"] / banksim.FULL_ROWS
    got = (full["category"] == category).mean()
    # within 10 % relative or 0.2 percentage points
    assert _within(got, want, 0.10) or abs(got - want) <= 0.002, (got, want)


@pytest.mark.parametrize("category", CATEGORIES)
def test_category_fraud_rate_matches_the_table(full: pd.DataFrame, category: str) -> None:
    table = _category_table().loc[category]
    want = table["frauds"] / table["rows"]
    got = full.loc[full["category"] == category, "fraud"].mean()
    if want == 0:
        assert got == 0  # categories without a fraud row have no frauds
    else:
        assert _within(got, want, 0.10) or abs(got - want) <= 0.001, (got, want)  # 10 % or 0.1 pp


# --- customers ------------------------------------------------------------------------------------


def test_customers_keep_one_age_and_one_gender(per_customer: pd.DataFrame) -> None:
    assert (per_customer["ages"] == 1).all()
    assert (per_customer["genders"] == 1).all()


def test_enterprises_and_only_they_have_unknown_age(full: pd.DataFrame) -> None:
    enterprise = full["gender"] == "E"
    assert enterprise.any()
    assert ((full["age"] == "U") == enterprise).all()


#: gender -> (rows tolerance, frauds tolerance), relative; 'E' (8 customers) and 'U' (4) are small
GENDER_TOLERANCE = {"F": (0.02, 0.05), "M": (0.02, 0.05), "E": (0.25, 0.6), "U": (0.35, 0.0)}


@pytest.mark.parametrize("gender", banksim.GENDERS)
def test_gender_rows_and_frauds_match_the_table(full: pd.DataFrame, gender: str) -> None:
    want_rows, want_frauds = generator.GENDER_TABLE[gender]
    rows_tol, frauds_tol = GENDER_TOLERANCE[gender]
    group = full[full["gender"] == gender]
    assert _within(len(group), want_rows, rows_tol), (len(group), want_rows)
    assert _within(int(group["fraud"].sum()), want_frauds, frauds_tol), (group["fraud"].sum(), want_frauds)


#: age -> (rows tolerance, frauds tolerance), relative; age '0' has only 17 customers, 'U' 8
AGE_TOLERANCE = {a: (0.05, 0.10) for a in AGES} | {"0": (0.15, 0.25), "U": (0.25, 0.6)}


@pytest.mark.parametrize("age", AGES)
def test_age_rows_and_frauds_match_the_table(full: pd.DataFrame, age: str) -> None:
    want_rows, want_frauds = generator.AGE_TABLE[age]
    rows_tol, frauds_tol = AGE_TOLERANCE[age]
    group = full[full["age"] == age]
    assert _within(len(group), want_rows, rows_tol), (len(group), want_rows)
    assert _within(int(group["fraud"].sum()), want_frauds, frauds_tol), (group["fraud"].sum(), want_frauds)


def test_customers_pay_about_once_per_step(per_customer: pd.DataFrame) -> None:
    rows = per_customer["rows"]
    assert rows.mean() == pytest.approx(144.6, abs=0.1)  # fixed by rows / customers
    assert _within(rows.median(), 165, 0.05)  # median within 5 %
    assert _within(rows.quantile(0.1), 77, 0.15)  # p10 within 15 %
    assert _within(rows.quantile(0.9), 177, 0.05)  # p90 within 5 %
    assert _within(rows.max(), 265, 0.20)  # max within 20 %


def test_customers_mostly_start_at_the_beginning(per_customer: pd.DataFrame) -> None:
    first = per_customer["first_step"]
    assert 0.45 <= (first == 0).mean() <= 0.55  # half on step 0, within 5 pp
    assert (first <= 16).mean() >= 0.88  # 90 % by step 16, within 2 pp


def test_customers_visit_about_a_dozen_merchants(per_customer: pd.DataFrame) -> None:
    assert abs(per_customer["merchants"].median() - 11) <= 2  # median 11, within 2
    assert abs(per_customer["merchants"].quantile(0.9) - 15) <= 3  # p90 15, within 3


def test_fraud_is_concentrated_on_a_subset_of_customers(per_customer: pd.DataFrame) -> None:
    victims = per_customer[per_customer["frauds"] > 0]
    share = victims["frauds"] / victims["rows"]
    assert _within(len(victims), 1_483, 0.10)  # customers with a fraud within 10 %
    assert abs(share.median() - 0.023) <= 0.01  # median fraud share 2.3 %, within 1 pp
    assert abs(share.quantile(0.9) - 0.148) <= 0.04  # p90 fraud share 14.8 %, within 4 pp


def test_ids_and_zipcodes_have_the_public_shapes(full: pd.DataFrame) -> None:
    assert full["customer"].str.fullmatch(banksim.CUSTOMER_PATTERN).all()
    assert full["merchant"].str.fullmatch(banksim.MERCHANT_PATTERN).all()
    assert (full["zipcodeOri"] == "28007").all()
    assert (full["zipMerchant"] == "28007").all()


# --- amounts --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("category", "label"), list(generator.AMOUNT_QUANTILES))
def test_amount_quantiles_match_the_table(full: pd.DataFrame, category: str, label: int) -> None:
    amounts = full.loc[(full["category"] == category) & (full["fraud"] == label), "amount"]
    want = generator.AMOUNT_QUANTILES[(category, label)]
    got = amounts.quantile([0.10, 0.25, 0.50, 0.75, 0.90, 0.99]).to_numpy()
    assert len(amounts) > 0
    # p25/p50/p75 within 15 %, p10/p90 within 20 %, p99 within 30 % (groups go down to 45 rows)
    for q, g, w, tol in zip(("p10", "p25", "p50", "p75", "p90", "p99"), got, want, (0.2, 0.15, 0.15, 0.15, 0.2, 0.3)):
        assert _within(g, w, tol), (q, g, w)


def test_categories_without_a_fraud_row_have_no_frauds(full: pd.DataFrame) -> None:
    fraud_categories = set(full.loc[full["fraud"] == 1, "category"])
    assert fraud_categories == {c for c, label in generator.AMOUNT_QUANTILES if label == 1}


def test_amounts_are_cents_between_zero_and_the_public_maximum(full: pd.DataFrame) -> None:
    amount = full["amount"].to_numpy()
    assert amount.min() >= 0.0
    assert amount.max() <= 8_329.96
    assert np.allclose(np.round(amount * 100), amount * 100, atol=1e-6)


def test_overall_amount_statistics_match_the_public_file(full: pd.DataFrame) -> None:
    amount = full["amount"]
    assert _within(amount.mean(), 37.89, 0.05)  # mean within 5 %
    assert _within(amount.std(), 111.40, 0.10)  # std within 10 %
    assert _within(amount.quantile(0.25), 13.74, 0.05)  # q25 within 5 %
    assert _within(amount.median(), 26.90, 0.03)  # median within 3 %
    assert _within(amount.quantile(0.75), 42.54, 0.05)  # q75 within 5 %
    assert amount.max() > 5_000  # the travel-fraud tail is there


def test_no_customer_merchant_amount_step_repeats(full: pd.DataFrame) -> None:
    assert not full.duplicated(["customer", "merchant", "amount", "step"]).any()


# --- file format ----------------------------------------------------------------------------------


def test_file_starts_with_the_header_and_uses_crlf(small_file: Path) -> None:
    raw = small_file.read_bytes()
    assert raw.startswith(b"step,customer,age,gender,zipcodeOri,merchant,zipMerchant,category,amount,fraud\r\n")
    assert raw.endswith(b"\r\n")
    assert raw.count(b"\n") == raw.count(b"\r\n") == SMALL_ROWS + 1


def test_text_is_single_quoted_and_numbers_are_bare(small_file: Path) -> None:
    lines = small_file.read_bytes().decode("ascii").split("\r\n")[1:-1]
    bare = re.compile(r"^\d+,('[^',]*',){7}\d+\.\d\d,[01]$")
    assert all(bare.match(line) for line in lines), next(line for line in lines if not bare.match(line))
    assert lines[0].split(",")[4] == "'28007'"


def test_file_reads_back_as_the_generated_data(small_file: Path) -> None:
    expected = generator.generate(SMALL_ROWS, seed=11)
    pd.testing.assert_frame_equal(_read(small_file), expected, check_dtype=False)


def test_with_id_variant_counts_ids_from_zero_and_dates_steps(tmp_path: Path) -> None:
    path = generator.write_sample(tmp_path / "with_id.csv", rows=3_000, seed=5, variant="with-id")
    data = _read(path)
    assert list(data.columns) == list(WITH_ID_COLUMNS)
    assert (data["id"].to_numpy() == np.arange(3_000)).all()
    start = dt.datetime.fromisoformat(DEFAULT_START_DATE)
    expected_dates = [(start + dt.timedelta(days=int(s))).strftime("%Y-%m-%d %H:%M:%S") for s in data["step"]]
    assert data["date"].tolist() == expected_dates
    first = path.read_bytes().split(b"\r\n")[1]
    assert first.startswith(b"0,2024-01-01 00:00:00,0,'C")  # id and date unquoted


def test_full_size_file_is_about_the_public_files_size(full: pd.DataFrame) -> None:
    size = len(generator.format_csv(full).encode("ascii"))
    assert _within(size, 48_986_035, 0.01)  # within 1 % of the public file's bytes


def test_csv_module_parses_the_file_with_quote_char(small_file: Path) -> None:
    rows = list(csv.reader(io.StringIO(small_file.read_text(), newline=""), quotechar="'"))
    assert rows[0] == list(BANKSIM_COLUMNS)
    assert len(rows) == SMALL_ROWS + 1
    assert all(len(r) == 10 for r in rows)


def test_unknown_variant_is_rejected(full: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="variant"):
        generator.format_csv(full.head(3), variant="parquet")


# --- determinism and scaling ----------------------------------------------------------------------


def test_same_seed_gives_a_byte_identical_file(tmp_path: Path) -> None:
    first = generator.write_sample(tmp_path / "a.csv", rows=SMALL_ROWS, seed=42)
    second = generator.write_sample(tmp_path / "b.csv", rows=SMALL_ROWS, seed=42)
    assert _sha256(first) == _sha256(second)


def test_different_seeds_give_different_files(tmp_path: Path) -> None:
    first = generator.write_sample(tmp_path / "a.csv", rows=SMALL_ROWS, seed=42)
    second = generator.write_sample(tmp_path / "b.csv", rows=SMALL_ROWS, seed=43)
    assert _sha256(first) != _sha256(second)


@pytest.mark.parametrize(("rows", "frauds_per_step", "customers"), [(59_464, 4, 411), (29_732, 2, 206)])
def test_rows_scale_frauds_and_customers_in_proportion(rows: int, frauds_per_step: int, customers: int) -> None:
    data = generator.generate(rows, seed=1)
    assert len(data) == rows
    assert data["step"].nunique() == 180
    assert (data.groupby("step")["fraud"].sum() == frauds_per_step).all()  # 40 per step, scaled
    assert data["customer"].nunique() == customers  # 4,112 scaled
    assert not data.duplicated(["customer", "merchant", "amount", "step"]).any()


def test_odd_sizes_spread_frauds_evenly_over_steps() -> None:
    p = generator.plan(10_000)  # 121 frauds over 180 steps
    assert p.frauds == 121
    assert set(p.frauds_per_step.tolist()) == {0, 1}
    assert p.frauds_per_step[:90].sum() == pytest.approx(p.frauds_per_step[90:].sum(), abs=1)


def test_files_under_180_rows_get_one_step_per_row() -> None:
    data = generator.generate(50, seed=1)
    assert len(data) == 50
    assert sorted(data["step"]) == list(range(50))
    assert int(data["fraud"].sum()) == 1  # at least one fraud, so both labels exist


def test_zero_rows_are_rejected() -> None:
    with pytest.raises(ValueError, match="rows"):
        generator.plan(0)


def test_small_samples_still_have_every_merchant(small_file: Path) -> None:
    assert set(_read(small_file)["merchant"]) == set(MERCHANTS)


# --- the app --------------------------------------------------------------------------------------


def test_cli_writes_the_file_and_returns_zero(tmp_path: Path) -> None:
    output = tmp_path / "new" / "dir" / "transactions.csv"
    code = run_python_app(APP, "--rows", "2000", "--seed", "3", "--output", str(output)).returncode
    assert code == 0
    expected = generator.format_csv(generator.generate(2_000, seed=3)).encode("ascii")
    assert output.read_bytes() == expected


def test_cli_writes_the_with_id_variant(tmp_path: Path) -> None:
    output = tmp_path / "with_id.csv"
    assert run_python_app(APP, "--rows", "1000", "--output", str(output), "--variant", "with-id").returncode == 0
    assert output.read_bytes().startswith(b"id,date,step,customer,")


def test_cli_logs_rows_frauds_and_time(tmp_path: Path) -> None:
    # The app configures logging itself, to stderr: read what it printed there.
    err = run_python_app(APP, "--rows", "1000", "--output", str(tmp_path / "t.csv")).stderr
    lines = [line for line in err.splitlines() if "generate_transactions" in line]
    assert lines, "the app logged nothing to stderr"
    message = lines[-1]
    assert "INFO" in message
    assert "1000 rows" in message and "12 frauds" in message and re.search(r"in \d+\.\d s", message)


def test_cli_rejects_an_unknown_variant(tmp_path: Path) -> None:
    # argparse refuses it: SystemExit(2), before anything is written
    proc = run_python_app(APP, "--output", str(tmp_path / "x.csv"), "--variant", "json")
    assert proc.returncode == 2

"""The BankSim reference: format and vocabulary of the public file.

Figures are those of ``bs140513_032310.csv`` (Lopez-Rojas & Axelsson, 2014),
measured on the public file. Validation, the generator and the tests read
them from here, so the vocabulary is written down once.
"""

from __future__ import annotations

#: Column order of the public file.
BANKSIM_COLUMNS: tuple[str, ...] = (
    "step",
    "customer",
    "age",
    "gender",
    "zipcodeOri",
    "merchant",
    "zipMerchant",
    "category",
    "amount",
    "fraud",
)

#: The variant used by Spark lab tutorials puts an integer id and a timestamp in front.
WITH_ID_COLUMNS: tuple[str, ...] = ("id", "date", *BANKSIM_COLUMNS)

#: Text columns the public file wraps in single quotes.
QUOTED_COLUMNS: frozenset[str] = frozenset(
    {"customer", "age", "gender", "zipcodeOri", "merchant", "zipMerchant", "category"}
)

AGES: tuple[str, ...] = ("0", "1", "2", "3", "4", "5", "6", "U")
GENDERS: tuple[str, ...] = ("F", "M", "E", "U")
ZIPCODE = "28007"
N_STEPS = 180
FULL_ROWS = 594_643

CATEGORIES: tuple[str, ...] = (
    "es_barsandrestaurants",
    "es_contents",
    "es_fashion",
    "es_food",
    "es_health",
    "es_home",
    "es_hotelservices",
    "es_hyper",
    "es_leisure",
    "es_otherservices",
    "es_sportsandtoys",
    "es_tech",
    "es_transportation",
    "es_travel",
    "es_wellnessandbeauty",
)

#: merchant -> (category, rows, frauds, mean amount) in the public file.
MERCHANTS: dict[str, tuple[str, int, int, float]] = {
    "M1823072687": ("es_transportation", 299_693, 0, 26.95),
    "M348934600": ("es_transportation", 205_426, 0, 26.97),
    "M85975013": ("es_food", 26_254, 0, 37.07),
    "M1053599405": ("es_health", 6_821, 0, 103.07),
    "M151143676": ("es_barsandrestaurants", 6_373, 120, 43.46),
    "M855959430": ("es_hyper", 6_098, 280, 45.97),
    "M1946091778": ("es_wellnessandbeauty", 5_343, 0, 57.07),
    "M1913465890": ("es_health", 3_988, 0, 104.44),
    "M209847108": ("es_wellnessandbeauty", 3_814, 106, 62.39),
    "M480139044": ("es_health", 3_508, 1_634, 244.69),
    "M349281107": ("es_fashion", 2_881, 0, 61.93),
    "M1600850729": ("es_fashion", 2_624, 0, 63.09),
    "M1535107174": ("es_wellnessandbeauty", 1_868, 174, 74.73),
    "M980657600": ("es_sportsandtoys", 1_769, 1_472, 299.96),
    "M78078399": ("es_wellnessandbeauty", 1_608, 44, 63.08),
    "M1198415165": ("es_wellnessandbeauty", 1_580, 358, 94.62),
    "M840466850": ("es_tech", 1_399, 158, 137.08),
    "M1649169323": ("es_sportsandtoys", 1_173, 124, 123.38),
    "M547558035": ("es_fashion", 949, 116, 84.13),
    "M50039827": ("es_health", 916, 46, 120.50),
    "M1888755466": ("es_otherservices", 912, 228, 135.88),
    "M692898500": ("es_health", 900, 16, 110.71),
    "M1400236507": ("es_home", 776, 0, 116.12),
    "M1842530320": ("es_tech", 751, 0, 99.59),
    "M732195782": ("es_travel", 608, 518, 2325.10),
    "M97925176": ("es_wellnessandbeauty", 599, 0, 56.64),
    "M45060432": ("es_hotelservices", 573, 0, 103.03),
    "M1741626453": ("es_sportsandtoys", 528, 196, 173.34),
    "M1313686961": ("es_contents", 527, 0, 44.59),
    "M1872033263": ("es_home", 525, 0, 114.77),
    "M1352454843": ("es_hotelservices", 370, 0, 109.98),
    "M677738360": ("es_contents", 358, 0, 44.48),
    "M2122776122": ("es_home", 341, 200, 322.58),
    "M923029380": ("es_home", 323, 102, 205.74),
    "M3697346": ("es_leisure", 308, 290, 288.44),
    "M17379832": ("es_sportsandtoys", 282, 178, 250.38),
    "M1748431652": ("es_wellnessandbeauty", 274, 36, 76.53),
    "M1873032707": ("es_hotelservices", 250, 216, 376.24),
    "M2011752106": ("es_hotelservices", 244, 166, 323.58),
    "M1416436880": ("es_tech", 220, 0, 91.27),
    "M1294758098": ("es_leisure", 191, 184, 289.67),
    "M1788569036": ("es_sportsandtoys", 181, 0, 94.69),
    "M857378720": ("es_hotelservices", 122, 92, 356.24),
    "M348875670": ("es_hotelservices", 107, 10, 120.74),
    "M1353266412": ("es_hotelservices", 78, 64, 377.83),
    "M495352832": ("es_travel", 69, 24, 1618.72),
    "M933210764": ("es_sportsandtoys", 69, 12, 125.57),
    "M2080407379": ("es_travel", 48, 36, 2299.51),
    "M117188757": ("es_home", 21, 0, 105.10),
    "M1726401631": ("es_travel", 3, 0, 855.92),
}

MERCHANT_CATEGORY: dict[str, str] = {m: v[0] for m, v in MERCHANTS.items()}

#: Id shapes: 'C' or 'M' followed by digits.
CUSTOMER_PATTERN = r"^C[0-9]+$"
MERCHANT_PATTERN = r"^M[0-9]+$"

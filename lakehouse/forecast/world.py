"""The synthetic grocery chain, the demo's data source: stores, products, promotions (every
published version), regional temperature forecasts as a covariate, holidays and local events,
and daily sales per store.

Sales are generated one store at a time (`store_sales`), so a full-scale world (150 stores x
8,000 SKUs x 3 years) is written partition by partition and never sits in memory. Every draw
comes from a generator seeded by (seed, what, store), so a store's sales are the same whichever
process generates them and in whatever order. The world's vocabularies (five French regions,
seven categories, tourist and residential stores) are its own: production code never reads
this module and learns its regions, categories and store types from the tables.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from datetime import date, timedelta

import numpy as np
import polars as pl

# (stores, SKUs) per named scale. Full is the seed's chain; demo runs in a few minutes on 2 cores.
SCALES = {"demo": (6, 60), "full": (150, 8_000)}
REGIONS = ("north", "south", "east", "west", "paris")


def scale_counts(scale: str) -> tuple[int, int]:
    """`demo`, `full`, or explicit counts `STORESxSKUS` (e.g. `1x8000`)."""
    if scale in SCALES:
        return SCALES[scale]
    stores, _, skus = scale.lower().partition("x")
    if not (stores.isdigit() and skus.isdigit()):
        raise ValueError(f"forecast scale {scale!r}: use demo, full or STORESxSKUS such as 8x300")
    return int(stores), int(skus)


@dataclass(frozen=True)
class WorldConfig:
    """Sizes and dynamics of the synthetic grocery chain."""

    stores: int = SCALES["demo"][0]
    skus: int = SCALES["demo"][1]
    years: float = 3.0
    end_date: date = date(2026, 10, 12)  # first day without sales: history ends the day before
    seed: int = 7
    tourist_share: float = 0.3
    # Latent product profiles; "new" products launched within the last 6 months.
    profile_shares: dict = field(default_factory=lambda: {"stable": 0.4, "seasonal": 0.3, "promo": 0.15, "new": 0.15})
    promo_uplift_per_discount: float = 6.0  # units x (1 + 6 x discount) while on promotion
    revision_share: float = 0.25  # promotions revised at least once after publication

    @classmethod
    def from_env(cls) -> WorldConfig:
        # LAKEHOUSE_SCALE is shared by every case (demo | full); the case's own variable also takes counts.
        shared = os.environ.get("LAKEHOUSE_SCALE", "demo")
        stores, skus = scale_counts(
            os.environ.get("LAKEHOUSE_FORECAST_SCALE") or (shared if shared in SCALES else "demo")
        )
        return cls(stores=stores, skus=skus, seed=int(os.environ.get("LAKEHOUSE_SEED", cls.seed)))

    def with_(self, **changes) -> WorldConfig:
        return replace(self, **changes)

    @property
    def start_date(self) -> date:
        return self.end_date - timedelta(days=round(self.years * 365))

    @property
    def last_day(self) -> date:
        return self.end_date - timedelta(days=1)


def store_key(region: str, number: int) -> str:
    """Store ids that read well: `<region>-s<number>`."""
    return f"{region}-s{number:03d}"


def store_keys(world: WorldConfig) -> list[str]:
    return [store_key(REGIONS[i % len(REGIONS)], i + 1) for i in range(world.stores)]


def regions(world: WorldConfig) -> tuple[str, ...]:
    """The regions that have a store (promotions, weather and events only name these)."""
    return REGIONS[: min(world.stores, len(REGIONS))]


CATEGORIES = {
    "fresh": ("fruit", "vegetables", "meat"),
    "dairy": ("milk", "yogurt", "cheese"),
    "bakery": ("bread", "pastry"),
    "beverages": ("water", "soda", "beer"),
    "grocery": ("pasta", "canned", "snacks"),
    "frozen": ("ice-cream", "ready-meals"),
    "household": ("cleaning", "paper"),
}
PERISHABLE = ("fresh", "dairy", "bakery")
SUMMER_CATEGORIES = ("beverages", "frozen")  # peak in summer and rise with temperature
STORE_TYPES = ("tourist", "residential")
EVENT_KINDS = ("holiday", "local_event")
PROFILES = ("stable", "seasonal", "promo", "new")
# (month, day) of the French public holidays with a fixed date.
HOLIDAYS = (
    (1, 1, "New Year"),
    (5, 1, "Labour Day"),
    (5, 8, "Victory in Europe Day"),
    (7, 14, "Bastille Day"),
    (8, 15, "Assumption"),
    (11, 1, "All Saints"),
    (11, 11, "Armistice"),
    (12, 25, "Christmas"),
)
REGION_TEMPERATURE_OFFSET = {"north": -2.0, "south": 4.0, "east": -1.0, "west": 1.0, "paris": 0.5}
WEEKLY_PATTERN = np.array([0.90, 0.92, 0.95, 1.00, 1.15, 1.30, 0.78])  # Monday..Sunday
WEATHER_LEAD_DAYS = 7
LOCAL_EVENTS_PER_REGION_YEAR = 6
LOCAL_EVENT_UPLIFT = 1.3


def _stable_hash(text: str) -> int:
    return int.from_bytes(text.encode()[:8].ljust(8, b"\0"), "little") ^ len(text)


def _seq(world: WorldConfig, what: str, index: int = 0) -> np.random.Generator:
    """A generator for one named draw, independent of Python's hash seed."""
    return np.random.default_rng([world.seed, _stable_hash(what), index])


def days(world: WorldConfig, extra_days: int = 0) -> np.ndarray:
    return np.arange(np.datetime64(world.start_date), np.datetime64(world.end_date) + np.timedelta64(extra_days, "D"))


# --------------------------------------------------------------------------- master tables


def stores(world: WorldConfig) -> pl.DataFrame:
    rng = _seq(world, "stores")
    keys = store_keys(world)
    tourist = np.zeros(len(keys), dtype=bool)
    tourist[rng.permutation(len(keys))[: round(world.tourist_share * len(keys))]] = True
    opening = [world.start_date - timedelta(days=int(rng.integers(200, 4000))) for _ in keys]
    if len(keys) >= 4:  # one store opened during the history
        opening[len(keys) // 2] = world.end_date - timedelta(days=420)
    return pl.DataFrame(
        {
            "store_id": keys,
            "region": [REGIONS[i % len(REGIONS)] for i in range(len(keys))],
            "store_type": ["tourist" if t else "residential" for t in tourist],
            "opening_date": opening,
        },
        schema={"store_id": pl.String, "region": pl.String, "store_type": pl.String, "opening_date": pl.Date},
    )


@dataclass(frozen=True)
class ProductDynamics:
    """Hidden demand parameters of each product (the generator's truth, not a table)."""

    profile: np.ndarray
    level: np.ndarray
    weekly_amplitude: np.ndarray
    yearly_amplitude: np.ndarray
    yearly_peak_doy: np.ndarray
    noise_shape: np.ndarray
    summer: np.ndarray


def _families() -> list[tuple[str, str]]:
    return [(c, f"{c}-{f}") for c, fams in CATEGORIES.items() for f in fams]


def products(world: WorldConfig) -> pl.DataFrame:
    rng = _seq(world, "products")
    n = world.skus
    fams = _families()
    pick = rng.integers(0, len(fams), n)
    category = [fams[i][0] for i in pick]
    profile = product_dynamics(world).profile
    launch = []
    for p in profile:
        if p == "new":
            launch.append(world.end_date - timedelta(days=int(rng.integers(30, 170))))
        elif rng.random() < 0.1:
            launch.append(world.end_date - timedelta(days=int(rng.integers(400, 900))))
        else:
            launch.append(world.start_date - timedelta(days=int(rng.integers(30, 2000))))
    price = np.round(np.exp(rng.normal(1.0, 0.6, n)), 2).clip(0.3, 40)
    return pl.DataFrame(
        {
            "sku_id": [f"sku{i + 1:05d}" for i in range(n)],
            "category": category,
            "family": [fams[i][1] for i in pick],
            "launch_date": launch,
            "perishable": [c in PERISHABLE for c in category],
            "unit_price": price,
        },
        schema={
            "sku_id": pl.String,
            "category": pl.String,
            "family": pl.String,
            "launch_date": pl.Date,
            "perishable": pl.Boolean,
            "unit_price": pl.Float64,
        },
    )


def product_dynamics(world: WorldConfig) -> ProductDynamics:
    rng = _seq(world, "dynamics")
    n = world.skus
    shares = world.profile_shares
    profile = rng.choice(np.array(PROFILES), size=n, p=[shares[p] for p in PROFILES])
    fams = _families()
    category = np.array([fams[i][0] for i in _seq(world, "products").integers(0, len(fams), n)])
    summer = np.isin(category, SUMMER_CATEGORIES)
    level_mean = {"stable": 140.0, "seasonal": 70.0, "promo": 30.0, "new": 45.0}
    level = np.array([level_mean[p] for p in profile]) * np.exp(rng.normal(0, 0.35, n))
    weekly = np.select([profile == "stable", profile == "seasonal"], [0.25, 1.0], 0.6)
    yearly = np.where(profile == "seasonal", rng.uniform(0.3, 0.5, n), 0.04)
    peak = np.where(summer, 200, np.where(rng.random(n) < 0.5, 355, 30)).astype(float)
    shape = np.select([profile == "stable", profile == "seasonal", profile == "promo"], [400.0, 60.0, 25.0], 30.0)
    return ProductDynamics(profile, level, weekly, yearly, peak, shape, summer)


def promotions(world: WorldConfig, product_table: pl.DataFrame) -> pl.DataFrame:
    """Every published version of every promotion known at the end of the history.

    A promotion is announced 14 to 90 days before it starts; a share of them is revised later
    (discount or end date changed), each revision a new row with a later publication date.
    """
    rng = _seq(world, "promotions")
    dyn = product_dynamics(world)
    horizon_end = world.end_date + timedelta(days=90)
    rows = []
    launches = product_table["launch_date"].to_list()
    for i, sku in enumerate(product_table["sku_id"].to_list()):
        is_promo = dyn.profile[i] == "promo"
        gap_mean = 35 if is_promo else 150
        day = max(world.start_date, launches[i]) + timedelta(days=int(rng.integers(0, gap_mean)))
        number = 0
        while day < horizon_end:
            number += 1
            length = int(rng.integers(5, 10))
            discount = float(np.round(rng.uniform(0.2, 0.4) if is_promo else rng.uniform(0.1, 0.2), 2))
            region = None if rng.random() < 0.7 else REGIONS[int(rng.integers(0, len(REGIONS)))]
            region = region if region in regions(world) else None
            published = day - timedelta(days=int(rng.integers(14, 91)))
            promo_id = f"{sku}-p{number:03d}"
            end = day + timedelta(days=length - 1)
            versions = [(published, discount, end)]
            if rng.random() < world.revision_share:
                revised_on = published + timedelta(days=int(rng.integers(1, max(2, (day - published).days))))
                new_discount = float(np.clip(np.round(discount + rng.choice([-0.1, 0.1]), 2), 0.05, 0.5))
                versions.append((revised_on, new_discount, end + timedelta(days=int(rng.integers(-2, 3)))))
            for version, (pub, disc, stop) in enumerate(versions, start=1):
                if pub <= world.last_day:
                    rows.append((promo_id, version, sku, region, day, max(stop, day), disc, pub))
            day = end + timedelta(days=int(rng.integers(gap_mean // 2, gap_mean * 3 // 2 + 1)))
    return pl.DataFrame(
        rows,
        schema={
            "promo_id": pl.String,
            "version": pl.Int64,
            "sku_id": pl.String,
            "region": pl.String,
            "start_date": pl.Date,
            "end_date": pl.Date,
            "discount": pl.Float64,
            "published_date": pl.Date,
        },
        orient="row",
    )


def actual_temperature(world: WorldConfig) -> dict[str, np.ndarray]:
    """The weather that happened, per region and day (through 7 days after the history)."""
    d = days(world, WEATHER_LEAD_DAYS + 1)
    doy = (d - d.astype("datetime64[Y]")).astype(int)
    out = {}
    for k, region in enumerate(REGIONS):
        rng = _seq(world, "weather", k)
        noise = np.zeros(len(d))
        shocks = rng.normal(0, 1.6, len(d))
        for t in range(1, len(d)):
            noise[t] = 0.75 * noise[t - 1] + shocks[t]
        out[region] = 12.0 + REGION_TEMPERATURE_OFFSET[region] + 9.0 * np.sin(2 * np.pi * (doy - 110) / 365.25) + noise
    return out


def weather_forecasts(world: WorldConfig) -> pl.DataFrame:
    """Covariate `temp_c` per region: forecasts issued each day (`known_from`) for the next 1..7 days;
    the error grows with the lead time."""
    d = days(world, WEATHER_LEAD_DAYS + 1)
    temps = actual_temperature(world)
    issue = d[: len(d) - WEATHER_LEAD_DAYS - 1]
    frames = []
    for k, region in enumerate(REGIONS):
        if region not in regions(world):
            continue
        rng = _seq(world, "weather-forecast", k)
        for lead in range(1, WEATHER_LEAD_DAYS + 1):
            target_index = np.arange(len(issue)) + lead
            frames.append(
                pl.DataFrame(
                    {
                        "name": "temp_c",
                        "region": region,
                        "date": d[target_index],
                        "known_from": issue,
                        "value": np.round(temps[region][target_index] + rng.normal(0, 0.6 * lead, len(issue)), 1),
                    }
                )
            )
    return (
        pl.concat(frames).with_columns(pl.col("date", "known_from").cast(pl.Date)).sort("region", "known_from", "date")
    )


def events(world: WorldConfig) -> pl.DataFrame:
    rows = []
    for year in range(world.start_date.year, world.end_date.year + 2):
        for month, day, name in HOLIDAYS:
            rows.append((date(year, month, day), name, "holiday", None))
    rng = _seq(world, "events")
    span = (world.end_date - world.start_date).days + 60
    for region in regions(world):
        count = int(LOCAL_EVENTS_PER_REGION_YEAR * span / 365)
        for offset in sorted(rng.choice(span, count, replace=False)):
            start = world.start_date + timedelta(days=int(offset))
            for extra in range(int(rng.integers(1, 4))):
                rows.append((start + timedelta(days=extra), f"{region} fair", "local_event", region))
    return (
        pl.DataFrame(
            rows, schema={"date": pl.Date, "name": pl.String, "kind": pl.String, "region": pl.String}, orient="row"
        )
        .unique(["date", "name"], keep="first")
        .sort("date", "region", nulls_last=False)
    )


def master_tables(world: WorldConfig) -> dict[str, pl.DataFrame]:
    product_table = products(world)
    return {
        "stores": stores(world),
        "products": product_table,
        "promotions": promotions(world, product_table),
        "events": events(world),
        "covariates": weather_forecasts(world),
    }


# --------------------------------------------------------------------------- sales


def effective_promotions(promos: pl.DataFrame) -> pl.DataFrame:
    """What actually ran: the latest version published before the promotion started."""
    return promos.filter(pl.col("published_date") < pl.col("start_date")).sort("version").group_by("promo_id").last()


def store_sales(world: WorldConfig, tables: dict[str, pl.DataFrame], store_id: str) -> pl.DataFrame:
    """Daily units sold per SKU in one store, from the later of its opening and the launch."""
    store = tables["stores"].filter(pl.col("store_id") == store_id).row(0, named=True)
    product_table = tables["products"]
    dyn = product_dynamics(world)
    d = days(world)
    n, length = product_table.height, len(d)
    rng = _seq(world, "sales", int(store_id.rsplit("s", 1)[-1]))
    doy = (d - d.astype("datetime64[Y]")).astype(int)
    dow = (d.astype("datetime64[D]").astype(int) + 3) % 7  # 1970-01-01 was a Thursday

    tourist = store["store_type"] == "tourist"
    size = rng.uniform(0.6, 1.4)
    weekly_shape = WEEKLY_PATTERN if not tourist else np.array([0.85, 0.85, 0.9, 0.95, 1.15, 1.45, 1.1])
    weekly = 1 + dyn.weekly_amplitude[:, None] * (weekly_shape[dow][None, :] - 1)
    yearly = 1 + dyn.yearly_amplitude[:, None] * np.cos(
        2 * np.pi * (doy[None, :] - dyn.yearly_peak_doy[:, None]) / 365.25
    )
    if tourist:
        store_season = (
            1 + 0.9 * np.exp(-0.5 * ((doy - 210) / 22.0) ** 2) - 0.12 * np.exp(-0.5 * ((doy - 20) / 40.0) ** 2)
        )
    else:
        store_season = 1 - 0.15 * np.exp(-0.5 * ((doy - 222) / 10.0) ** 2)
    calendar = np.ones(length)
    day_index = {np.datetime64(x): i for i, x in enumerate(d)}
    for row in tables["events"].iter_rows(named=True):
        i = day_index.get(np.datetime64(row["date"]))
        if i is None:
            continue
        if row["kind"] == "holiday":
            calendar[i] *= 0.5
            if i > 0:
                calendar[i - 1] *= 1.25
        elif row["region"] == store["region"]:
            calendar[i] *= LOCAL_EVENT_UPLIFT
    temp = actual_temperature(world)[store["region"]][:length]
    weather = 1 + np.where(dyn.summer[:, None], 0.03 * np.clip(temp[None, :] - 18, 0, None), 0)

    sku_index = {s: i for i, s in enumerate(product_table["sku_id"].to_list())}
    discount = np.zeros((n, length))
    ran = effective_promotions(tables["promotions"]).filter(
        pl.col("region").is_null() | (pl.col("region") == store["region"])
    )
    start0 = np.datetime64(world.start_date)
    for sku, start, end, pct in ran.select("sku_id", "start_date", "end_date", "discount").iter_rows():
        i = sku_index.get(sku)
        a = int((np.datetime64(start) - start0).astype(int))
        b = int((np.datetime64(end) - start0).astype(int)) + 1
        if i is not None and b > 0 and a < length:
            discount[i, max(a, 0) : min(b, length)] = pct
    uplift = np.where(dyn.profile == "promo", world.promo_uplift_per_discount, world.promo_uplift_per_discount / 2)
    promo = 1 + uplift[:, None] * discount

    launch = (product_table["launch_date"].to_numpy().astype("datetime64[D]") - start0).astype(int)
    opening = int((np.datetime64(store["opening_date"]) - start0).astype(int))
    first = np.maximum(launch, opening)
    age = np.arange(length)[None, :] - first[:, None]
    ramp = np.clip((age + 1) / 21.0, 0, 1) * (age >= 0)

    mu = (
        dyn.level[:, None]
        * size
        * weekly
        * yearly.clip(0.2)
        * store_season[None, :]
        * calendar[None, :]
        * weather
        * promo
        * ramp
    )
    noise = rng.gamma(dyn.noise_shape[:, None], 1.0 / dyn.noise_shape[:, None], (n, length))
    units = rng.poisson(mu * noise)
    sold = age >= 0
    rows, cols = np.nonzero(sold)
    skus = product_table["sku_id"].to_numpy()
    return pl.DataFrame(
        {"store_id": store_id, "sku_id": skus[rows], "date": d[cols], "units": units[rows, cols].astype(np.float64)}
    ).with_columns(pl.col("date").cast(pl.Date))

# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Prepare zones
#
# First step of the demand model: a synthetic study area, projected to the horizon year,
# with the trips each zone sends and receives.
#
# 1. **Base year.** `n_zones` zones are scattered over a square of `area_km` by `area_km`.
#    Population and jobs thin out with distance from the centre (jobs more steeply, so there
#    is a town centre), with noise from a numpy generator seeded by `seed`: the same seed
#    always gives the same study area.
# 2. **Growth.** Over `horizon_years` jobs grow by `growth_rate` a year everywhere, while
#    population grows faster at the edge than in the centre (new housing goes where land
#    is), by about `growth_rate` on average. Faster growth therefore also spreads people outwards.
# 3. **Trip ends.** Each zone produces `trips_per_person` trips per resident; attractions
#    follow jobs, scaled to the same total, as a doubly constrained distribution needs.
#
# The growth model is calibrated for 0 to `max_calibrated_growth` a year. Outside that the
# flow still runs but prints a `Warning:` line, so the run shows orange.
#
# Set `fail` to make this flow raise on purpose (a build passes it for its `fail_at`).
#
# **Writes** `zones.parquet` into the working directory, which is the flow's instance
# directory: `zone, x_km, y_km, population_base, jobs_base, population, jobs, productions,
# attractions`.

# %% tags=["parameters"]
config = {}

# %%
from ductaflow import flow_config, unpack_config

config = flow_config(config, "config/flows/prepare_zones.json")
vars().update(unpack_config(config, "Prepare zones", locals()))

# %%
from pathlib import Path

import numpy as np
import pandas as pd

if fail:
    raise ValueError("deliberate failure requested by scenario")
if int(n_zones) < 2:
    raise ValueError(f"n_zones must be at least 2, got {n_zones}")
if horizon_years < 0:
    raise ValueError(f"horizon_years must not be negative, got {horizon_years}")
if growth_rate <= -1:
    raise ValueError(f"growth_rate must be above -1 (a whole population lost each year), got {growth_rate}")
if not 0 <= growth_rate <= max_calibrated_growth:
    print(
        f"Warning: growth_rate {growth_rate:.3f}/yr is outside the calibrated range "
        f"0 to {max_calibrated_growth:.3f}/yr; treat horizon-year zones as indicative"
    )

# %% [markdown]
# ## Base-year study area

# %%
POPULATION_DECAY_KM = 12.0  # population halves roughly every 8 km from the centre
JOBS_DECAY_KM = 5.0  # jobs are far more concentrated

rng = np.random.default_rng(int(seed))
x = rng.uniform(0.0, area_km, int(n_zones))
y = rng.uniform(0.0, area_km, int(n_zones))
r = np.hypot(x - area_km / 2, y - area_km / 2)
population_base = 9000 * rng.lognormal(0.0, 0.35, x.size) * np.exp(-r / POPULATION_DECAY_KM)
jobs_base = 12000 * rng.lognormal(0.0, 0.5, x.size) * np.exp(-r / JOBS_DECAY_KM)

print(f"{x.size} zones over {area_km:g} x {area_km:g} km (seed {seed})")
print(f"base year: population {population_base.sum():,.0f}, jobs {jobs_base.sum():,.0f}")

# %% [markdown]
# ## Growth to the horizon year

# %%
edge_weight = r / r.mean()  # 0 at the centre, 1 on average: outer zones grow faster
population = population_base * (1 + growth_rate * edge_weight) ** horizon_years
jobs = jobs_base * (1 + growth_rate) ** horizon_years

print(
    f"after {horizon_years} years at {growth_rate:.3f}/yr: population {population.sum():,.0f} "
    f"({population.sum() / population_base.sum() - 1:+.1%}), jobs {jobs.sum():,.0f} "
    f"({jobs.sum() / jobs_base.sum() - 1:+.1%})"
)

# %% [markdown]
# ## Trip ends

# %%
productions = population * trips_per_person
attractions = jobs * productions.sum() / jobs.sum()

zones = pd.DataFrame(
    {
        "zone": np.arange(1, x.size + 1),
        "x_km": x,
        "y_km": y,
        "population_base": population_base,
        "jobs_base": jobs_base,
        "population": population,
        "jobs": jobs,
        "productions": productions,
        "attractions": attractions,
    }
)
zones.to_parquet("zones.parquet", index=False)
print(f"{productions.sum():,.0f} trips a day; wrote {Path('zones.parquet').resolve()}")
zones.sort_values("population", ascending=False).head().round(1)

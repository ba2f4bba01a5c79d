# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Distribute trips
#
# Second step of the demand model: who travels where. A doubly constrained gravity model
# spreads each zone's productions over all zones' attractions.
#
# * **Generalised cost.** `cost = cost_sensitivity × distance_km`, with straight-line
#   distances between zone centres; a trip within a zone counts half the distance to the
#   nearest other zone. A higher `cost_sensitivity` makes travel feel dearer, so trips get
#   shorter.
# * **Gravity model.** `trips[i, j] = a[i] · productions[i] · b[j] · attractions[j] ·
#   exp(-cost[i, j])`. The balancing factors `a` and `b` are found by Furness (iterative
#   proportional fitting): alternately scale rows to productions and columns to
#   attractions until the largest relative row error is below `tolerance`, or
#   `max_iterations` is reached (then the flow prints a `Warning:` line and shows orange).
#
# **Reads** `zones_path`, relative to the working directory. In a build the flows run side
# by side in `<build instance>/runs/<flow instance>/`, so the default
# `../prepare_zones/zones.parquet` is the sibling `prepare_zones` instance.
#
# **Writes** `od_matrix.parquet`, one row per zone pair: `origin, destination, trips,
# distance_km`.

# %% tags=["parameters"]
config = {}

# %%
from ductaflow import flow_config, unpack_config

config = flow_config(config, "config/flows/distribute_trips.json")
vars().update(unpack_config(config, "Distribute trips", locals()))

# %%
from pathlib import Path

import numpy as np
import pandas as pd

if fail:
    raise ValueError("deliberate failure requested by scenario")
if cost_sensitivity < 0:
    raise ValueError(f"cost_sensitivity must not be negative, got {cost_sensitivity}")
if not zones_path.is_file():
    raise FileNotFoundError(
        f"zones file '{zones_path}' not found from {Path.cwd()}: run prepare_zones first "
        "(in a sibling instance directory ../prepare_zones/) or point zones_path at its zones.parquet"
    )
zones = pd.read_parquet(zones_path)
productions = zones["productions"].to_numpy()
attractions = zones["attractions"].to_numpy()
print(f"read {len(zones)} zones, {productions.sum():,.0f} trips from {zones_path}")

# %% [markdown]
# ## Cost matrix

# %%
xy = zones[["x_km", "y_km"]].to_numpy()
distance = np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1])
diagonal = np.eye(len(zones), dtype=bool)
distance[diagonal] = 0.5 * np.where(diagonal, np.inf, distance).min(axis=1)
cost = cost_sensitivity * distance
deterrence = np.exp(-cost)
print(f"distances {distance.min():.1f} to {distance.max():.1f} km; cost_sensitivity {cost_sensitivity:g} per km")

# %% [markdown]
# ## Furness balancing

# %%
a = np.ones(len(zones))
b = np.ones(len(zones))
for iteration in range(1, int(max_iterations) + 1):
    a = 1.0 / (deterrence @ (b * attractions))
    b = 1.0 / (deterrence.T @ (a * productions))
    row_sums = a * productions * (deterrence @ (b * attractions))
    error = float(np.max(np.abs(row_sums - productions) / productions))
    print(f"iteration {iteration:3d}: max relative row error {error:.2e}")
    if error < tolerance:
        break

if error < tolerance:
    print(f"Furness converged in {iteration} iterations: final error {error:.2e} (tolerance {tolerance:g})")
else:
    print(
        f"Warning: Furness did not converge in {iteration} iterations: "
        f"final error {error:.2e} is above the tolerance {tolerance:g}"
    )

# %% [markdown]
# ## OD matrix

# %%
trips = (a * productions)[:, None] * deterrence * (b * attractions)[None, :]
n = len(zones)
od = pd.DataFrame(
    {
        "origin": np.repeat(zones["zone"].to_numpy(), n),
        "destination": np.tile(zones["zone"].to_numpy(), n),
        "trips": trips.ravel(),
        "distance_km": distance.ravel(),
    }
)
od.to_parquet("od_matrix.parquet", index=False)
mean_km = float((od["trips"] * od["distance_km"]).sum() / od["trips"].sum())
print(f"{od['trips'].sum():,.0f} trips, mean length {mean_km:.2f} km; wrote {Path('od_matrix.parquet').resolve()}")

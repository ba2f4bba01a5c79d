# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Summarize
#
# Last step of the demand model: the few numbers a scenario is compared on, and a chart.
#
# **Reads** `zones_path` and `od_path`, relative to the working directory (by default the
# sibling `prepare_zones` and `distribute_trips` instances of the same build).
#
# **Writes**
#
# * `kpis.csv` with columns `kpi, value, unit`: population, jobs, total trips, person-km,
#   mean and median trip length, the share of trips that stay in their zone, the share of
#   trips longer than `long_trip_km`, and how far the OD matrix rows are from the zones'
#   productions (a check on the distribution step).
# * a recorded `survey_mean_trip_length`: what a survey of `survey_trips` random trips would
#   measure (stochastic: repeat it with replicates).
# * `trip_length.png`: the trip length distribution, in bins of `trip_length_bin_km`.

# %% tags=["parameters"]
config = {}

# %%
from ductaflow import flow_config, is_notebook_execution, record, unpack_config

config = flow_config(config, "config/flows/summarize.json")
vars().update(unpack_config(config, "Summarize", locals()))

# %%
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

if fail:
    raise ValueError("deliberate failure requested by scenario")
for name, path in (("zones_path", zones_path), ("od_path", od_path)):
    if not path.is_file():
        raise FileNotFoundError(
            f"{name} '{path}' not found from {Path.cwd()}: run the upstream flows first "
            "(as sibling instance directories) or point it at their output"
        )
zones = pd.read_parquet(zones_path)
od = pd.read_parquet(od_path)
print(f"read {len(zones)} zones from {zones_path} and {len(od)} OD pairs from {od_path}")

# %% [markdown]
# ## Key performance indicators

# %%
trips = od["trips"].to_numpy()
km = od["distance_km"].to_numpy()
total_trips = trips.sum()
order = np.argsort(km)
cumulative = np.cumsum(trips[order]) / total_trips
row_sums = od.groupby("origin")["trips"].sum().reindex(zones["zone"]).to_numpy()

kpis = pd.DataFrame(
    [
        ("zones", len(zones), "count"),
        ("population", zones["population"].sum(), "persons"),
        ("jobs", zones["jobs"].sum(), "jobs"),
        ("total_trips", total_trips, "trips/day"),
        ("person_km", (trips * km).sum(), "km/day"),
        ("mean_trip_length", (trips * km).sum() / total_trips, "km"),
        ("median_trip_length", km[order][np.searchsorted(cumulative, 0.5)], "km"),
        ("intrazonal_share", trips[od["origin"] == od["destination"]].sum() / total_trips, "fraction"),
        ("long_trip_share", trips[km > long_trip_km].sum() / total_trips, "fraction"),
        ("max_row_error", np.max(np.abs(row_sums / zones["productions"].to_numpy() - 1)), "fraction"),
    ],
    columns=["kpi", "value", "unit"],
)
kpis.to_csv("kpis.csv", index=False)
record(**{row.kpi: float(row.value) for row in kpis.itertuples()})  # joined onto the scenario table
for row in kpis.itertuples():
    shown = f"{row.value:,.0f}" if abs(row.value) >= 100 else f"{row.value:.4g}"
    print(f"  {row.kpi:<20} {shown:>12} {row.unit}")
print(f"wrote {Path('kpis.csv').resolve()}")

# %% [markdown]
# ## A household travel survey (the stochastic part)
#
# A survey observes `survey_trips` trips, drawn at random in proportion to the OD matrix; its
# mean trip length estimates the model's, with sampling noise. ductaflow seeds `random` and
# `numpy.random` from the run's seed (`ductaflow.seed()`) before the first cell, so a run
# repeats exactly, and `--replicates N` shows how far one survey can be off.

# %%
sampled = np.random.choice(len(km), size=int(survey_trips), p=trips / total_trips)
survey_mean_trip_length = float(km[sampled].mean())
record(survey_mean_trip_length=survey_mean_trip_length)
print(f"  survey of {int(survey_trips)} trips: mean trip length {survey_mean_trip_length:.2f} km")

# %% [markdown]
# ## Trip length distribution

# %%
bins = np.arange(0.0, km.max() + trip_length_bin_km, trip_length_bin_km)
mean_km = kpis.set_index("kpi").loc["mean_trip_length", "value"]
fig, ax = plt.subplots(figsize=(7, 4))
ax.hist(km, bins=bins, weights=trips / 1000, color="#3b7dd8", edgecolor="white")
ax.axvline(mean_km, color="#d1495b", linestyle="--", label=f"mean {mean_km:.1f} km")
ax.set_xlabel("trip length (km)")
ax.set_ylabel("trips per day (thousands)")
ax.set_title(f"Trip length distribution: {total_trips:,.0f} trips between {len(zones)} zones")
ax.legend()
fig.tight_layout()
fig.savefig("trip_length.png", dpi=100)
plt.close(fig)
print(f"wrote {Path('trip_length.png').resolve()}")

if is_notebook_execution():  # the Agg backend draws nothing inline: show the saved chart
    from IPython.display import Image, display

    display(Image(filename="trip_length.png"))

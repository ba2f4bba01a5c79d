# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Demand model (build)
#
# One scenario of the transport demand model: three flows run in order, each into its own
# directory under this build's instance directory.
#
# ```
# <build instance>/runs/prepare_zones/      zones.parquet       study area, growth, trip ends
# <build instance>/runs/distribute_trips/   od_matrix.parquet   gravity model, Furness balancing
# <build instance>/runs/summarize/          kpis.csv, trip_length.png
# ```
#
# A downstream flow reads its upstream through a relative path such as
# `../prepare_zones/zones.parquet`. Each flow gets only the keys it uses.
#
# **Scenario keys** (what a conductor varies): `growth_rate` (per year), `cost_sensitivity`
# (generalised cost per km), `n_zones`, `seed`, `horizon_years`. Flow-specific settings sit
# under the flow's name (`prepare_zones`, `distribute_trips`, `summarize`).
#
# **`fail_at`** (default `null`): the name of one of the three flows, which is then told to
# raise `ValueError("deliberate failure requested by scenario")`. The failing flow is red,
# `step()` raises `FlowFailed`, the build stops there and is red too; later flows do not
# run. It exists to show (and test) what a red scenario looks like; leave it `null`.
#
# Run again into the same instance directory, a step whose code, config and upstream steps
# are unchanged is not executed again: its line says "up to date" and its files stay.

# %% tags=["parameters"]
config = {}

# %%
from ductaflow import flow_config, step

config = flow_config(config, "config/builds/demand_model.json")

# %%
FLOWS = ("prepare_zones", "distribute_trips", "summarize")
fail_at = config["fail_at"]
if fail_at not in (None, *FLOWS):
    raise ValueError(f"fail_at must be null or one of {', '.join(FLOWS)}; got {fail_at!r}")


def report(result):
    """One line per finished flow: light, name, why, how long (or that it was up to date)."""
    if result.skipped:  # same code, config and upstream as its last run: step() ran nothing
        print(f"{result.status.emoji} {result.flow}: {result.status}, up to date: not re-run")
        return
    print(f"{result.status.emoji} {result.flow}: {result.status} ({result.reason}) in {result.duration:.1f}s")


print(
    f"scenario: growth_rate {config['growth_rate']}/yr, cost_sensitivity {config['cost_sensitivity']}/km, "
    f"{config['n_zones']} zones, seed {config['seed']}, horizon {config['horizon_years']} years"
)
if fail_at:
    print(f"fail_at: {fail_at} is asked to fail on purpose")

# %% [markdown]
# ## 1. Zones, growth and trip ends

# %%
zones = step(
    "flows/prepare_zones.py",
    "prepare_zones",
    {
        "n_zones": config["n_zones"],
        "seed": config["seed"],
        "horizon_years": config["horizon_years"],
        "growth_rate": config["growth_rate"],
        **config["prepare_zones"],
        "fail": fail_at == "prepare_zones",
    },
)
report(zones)

# %% [markdown]
# ## 2. Trip distribution

# %%
distribution = step(
    "flows/distribute_trips.py",
    "distribute_trips",
    {
        "zones_path": "../prepare_zones/zones.parquet",
        "cost_sensitivity": config["cost_sensitivity"],
        **config["distribute_trips"],
        "fail": fail_at == "distribute_trips",
    },
)
report(distribution)

# %% [markdown]
# ## 3. Indicators and chart

# %%
summary = step(
    "flows/summarize.py",
    "summarize",
    {
        "zones_path": "../prepare_zones/zones.parquet",
        "od_path": "../distribute_trips/od_matrix.parquet",
        **config["summarize"],
        "fail": fail_at == "summarize",
    },
)
report(summary)

# %%
import pandas as pd

kpis = pd.read_csv(summary.execution_dir / "kpis.csv")
print(kpis.to_string(index=False, float_format=lambda v: f"{v:,.0f}" if abs(v) >= 100 else f"{v:.4g}"))

# %% [markdown]
# # Conductor: the demand model over a grid of scenarios
#
# Runs `builds/demand_model.py` once per scenario, in parallel, each into its own
# instance directory `runs/demand_model/<scenario>/`, and keeps the live traffic-light
# report `runs/conductor_status_report.html` up to date while it runs.
#
# The grid crosses three annual growth rates with three cost sensitivities. The model is
# calibrated for growth up to 3 % a year, so the 4 % scenarios legitimately print a
# `Warning:` and show orange. Run it as a script (`python conductor.py`) or open it as a
# notebook and run the cells.

# %%
import sys

from ductaflow import conduct, expand_grid, is_notebook_execution

scenarios = expand_grid(growth_rate=[0.01, 0.02, 0.04], cost_sensitivity=[0.05, 0.1, 0.2])
scenarios.insert(
    0,
    "scenario_name",
    [f"g{g:.2f}_c{c:.2f}" for g, c in zip(scenarios.growth_rate, scenarios.cost_sensitivity, strict=True)],
)
scenarios

# %% [markdown]
# `conduct` merges each row over `config/builds/demand_model.json` and returns the table
# with each scenario's light, duration, instance directory and error (if any), plus the
# KPIs that `flows/summarize.py` stores with `record()`. A scenario whose last run is
# still up to date (same code, same config) is not run again: pass `force=True` for that.
# Process pools start fresh Python processes, so the call sits under the usual guard.

# %%
if __name__ == "__main__":
    results = conduct(scenarios, "builds/demand_model.py", raise_on_failure=False)
    shown = ["scenario_name", "status", "duration", "mean_trip_length", "worst_flow", "error"]
    print(results[[c for c in shown if c in results]].fillna("").to_string(index=False))
    if not is_notebook_execution() and (results["status"] == "red").any():
        sys.exit(1)

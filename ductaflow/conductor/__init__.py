"""The conductor: scenario tables to build instances, one scheduling loop, workers and executors."""

"""Pure logic, no writes: lights, config, flow files, names, fingerprints, the run context."""

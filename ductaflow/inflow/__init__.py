"""What a flow's own code calls: script mode (flow_config, load_cli_config, unpack_config) and step()."""

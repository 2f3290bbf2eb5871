"""The pure core: planning from policy, hosts, findings and a given time; no I/O, no clock."""

"""Execution: the ansible-runner adapter, runner events, and the batch loop."""

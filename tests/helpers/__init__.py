"""Test helpers: dataset writers, configs, command runners, fault callbacks, a toy model."""

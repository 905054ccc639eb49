"""Conformance tests: fixtures come from the root conftest (fixtures.plugin, fixtures.roles)."""

"""Measures of an attack's results: success, agreement with an oracle, realism in robust features."""

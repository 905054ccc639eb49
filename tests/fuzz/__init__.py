"""Fuzz targets shared by hypothesis tests and atheris harnesses (``python -m tests.fuzz.atheris_main``)."""

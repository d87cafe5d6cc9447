"""Kept for tools and habits that look for a setup.py; pyproject.toml says everything."""
from setuptools import setup

setup()

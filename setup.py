"""Everything is in pyproject.toml; this only adds the optional compiled modules."""

import os
import sys

from setuptools import setup

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # PEP 517 builds leave it out

from build_ext import extensions

setup(ext_modules=extensions())

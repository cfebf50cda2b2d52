"""Sphinx configuration for torchopt_lite."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

import torchopt_lite

project = "torchopt_lite"
author = "torchopt_lite developers"
copyright = "2026, torchopt_lite developers"
release = torchopt_lite.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",
]
autodoc_typehints = "description"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
nitpicky = False
suppress_warnings = ["ref.python"]
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path = ["_static"]

"""The optional C scanner (pflowbsd/pf/_fastscan.c); setup.cfg holds everything else.

optional=True: without a compiler or Python's headers the build warns and installs the
pure-Python package, whose fastscan.py then runs the regex (same results, slower).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("pflowbsd.pf._fastscan", ["pflowbsd/pf/_fastscan.c"], optional=True)])

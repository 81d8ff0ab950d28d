"""The optional C accelerators (pflowbsd/pf/_fastscan.c, _fastbuild.c,
pflowbsd/export/_v5pack.c); setup.cfg holds everything else.

optional=True: without a compiler or Python's headers the build warns and installs the
pure-Python package, whose fastscan.py and record.py then run the regex and the Python
builder, and v5.py its Python packer (same results, slower).
"""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension("pflowbsd.pf._fastscan", ["pflowbsd/pf/_fastscan.c"], optional=True),
    Extension("pflowbsd.pf._fastbuild", ["pflowbsd/pf/_fastbuild.c"], optional=True),
    Extension("pflowbsd.export._v5pack", ["pflowbsd/export/_v5pack.c"], optional=True),
])

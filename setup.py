"""Builds the compiled framing module; all other metadata lives in pyproject.toml."""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [Extension("zmsg._fastframe", ["zmsg/_fastframe.pyx"], extra_compile_args=["-O3"])],
        compiler_directives={"language_level": "3", "embedsignature": True},
    ),
)

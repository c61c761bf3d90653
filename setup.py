"""Builds the compiled modules (framing, socket option reads); all other metadata lives in pyproject.toml."""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [
            Extension("zmsg._fastframe", ["zmsg/_fastframe.pyx"], extra_compile_args=["-O3"]),
            Extension("zmsg._fastsock", ["zmsg/_fastsock.pyx"], extra_compile_args=["-O3"]),
        ],
        compiler_directives={"language_level": "3", "embedsignature": True},
    ),
)

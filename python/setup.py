"""Bundles the checkout's libhgrid.so.1 (../bin, or $HGRID_BIN) into the wheel when it is built."""
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithLibrary(build_py):
    def run(self):
        super().run()
        here = os.path.dirname(os.path.abspath(__file__))
        lib = os.path.join(os.environ.get("HGRID_BIN") or os.path.join(here, "..", "bin"), "libhgrid.so.1")
        if os.path.exists(lib):
            dest = os.path.join(self.build_lib, "hgrid", "_lib")
            os.makedirs(dest, exist_ok=True)
            shutil.copy2(lib, os.path.join(dest, "libhgrid.so.1"))


setup(cmdclass={"build_py": BuildWithLibrary})

"""Failure injectors for the failure matrix: each one fails in a chosen way when it runs.

This module is not installed, so it ships to the execution environment by value,
like a user's helper module next to a notebook.
"""

import ctypes
import os
import sys
import time

MB = 1024 * 1024


def fail(how: str):
    if how == "ok":
        return "ok"
    if how == "exception":
        raise ValueError("boom")
    if how == "sys.exit":
        sys.exit(3)
    if how == "os._exit":
        os._exit(4)
    if how == "segfault":
        ctypes.string_at(0)
    if how == "memory":
        hog = b"x" * (400 * MB)  # written, so every page is really used
        time.sleep(5)
        return hog
    if how == "timeout":
        time.sleep(100)
    raise AssertionError(how)


class FailOnPickle:
    """Fails when it is pickled (in whichever process pickles it)."""

    def __init__(self, how):
        self.how = how

    def __reduce__(self):
        fail(self.how)
        return (str, (self.how,))  # "ok": pickles as the string


class FailOnUnpickle:
    """Pickles fine; fails when it is unpickled."""

    def __init__(self, how):
        self.how = how

    def __reduce__(self):
        return (fail, (self.how,))

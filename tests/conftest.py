"""Shared by unit and integration tests."""

import os

import pytest

_HOME = os.getcwd()


@pytest.fixture(autouse=True)
def working_directory_kept():
    """Every test leaves the process's working directory as it found it. One that
    loses it (a tree walk left inside a directory that is then removed) fails here,
    named, instead of every later test that calls getcwd."""
    yield
    try:
        lost = os.getcwd() != _HOME
    except FileNotFoundError:
        lost = True
    if lost:
        os.chdir(_HOME)
        pytest.fail(f"the test left the working directory (it was {_HOME})")

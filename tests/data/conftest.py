"""Fixtures of the data tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def unverified(monkeypatch):
    """Catalogue checksums off, for parser tests that write small stand-in files
    under a catalogue name (real reads always verify them)."""
    from tfrec.data import datasets

    monkeypatch.setattr(datasets, "_expected_digest", lambda name, rel: None)

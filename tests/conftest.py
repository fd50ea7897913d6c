"""Shared pytest fixtures: the real material in ../shared/data, skipped with a reason where it is absent."""
from pathlib import Path
import os, pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get('SPAMO_SHARED_DATA', REPO.parent / 'shared' / 'data'))

@pytest.fixture(scope='session')
def shared_data() -> Path:
    "The licensed real material (How2Sign clips, PHOENIX14T annotations, published predictions); never committed."
    if not SHARED_DATA.is_dir():
        pytest.skip(f'real test material not found at {SHARED_DATA} (set SPAMO_SHARED_DATA to its folder)')
    return SHARED_DATA

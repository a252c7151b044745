"""genreclf: music genre classification on GTZAN, one module per pipeline stage.

Data flow: splits -> audio -> features/augment -> extract (cache) -> data -> train -> evaluate -> predict.
"""
from pathlib import Path

from .paths import ensure_numba_cache

ensure_numba_cache()  # before anything imports librosa (numba reads NUMBA_CACHE_DIR once, at import)

REPO = Path(__file__).resolve().parent.parent
GENRES_8 = ("classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae")
GENRES_10 = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")

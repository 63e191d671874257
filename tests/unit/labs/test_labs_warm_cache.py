import pytest

from tasks.labs import warm_cache
from tasks.settings import get_settings


@pytest.mark.slow
def test_warm_cache_writes_the_catalog_embeddings(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("HEALTHFLOW_EMBEDDING_CACHE_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        warm_cache.main()
    finally:
        get_settings.cache_clear()
    assert list(tmp_path.glob("lab-catalog-embeddings-*.npy"))
    assert "cached" in capsys.readouterr().out

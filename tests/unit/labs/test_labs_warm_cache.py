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


def test_concurrent_cache_writes_never_leave_half_a_file(tmp_path) -> None:
    import threading

    import numpy as np

    from tasks.labs.matcher import save_atomically

    target = tmp_path / "lab-catalog-embeddings-test.npy"
    arrays = [np.full((200, 64), float(i), dtype=np.float32) for i in range(8)]
    barrier = threading.Barrier(len(arrays))

    def write(array: np.ndarray) -> None:
        barrier.wait()
        for _ in range(5):
            save_atomically(target, array)

    threads = [threading.Thread(target=write, args=(a,)) for a in arrays]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    loaded = np.load(target)
    assert loaded.shape == (200, 64)
    assert len(set(loaded.ravel().tolist())) == 1  # one writer's whole array, never a mix
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temp file left behind

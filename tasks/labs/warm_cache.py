"""Precompute the catalog embeddings into the configured cache directory.

Run at image build time (containers/ml-worker/Dockerfile) so that a Spot task never spends its
minutes on them: `python -m tasks.labs.warm_cache`.
"""

from __future__ import annotations

import time

from tasks.labs.matcher import EmbeddingMatcher
from tasks.settings import get_settings


def main() -> None:
    settings = get_settings()
    cache_dir = settings.embedding_cache_dir or settings.data_dir / "embeddings"
    started = time.perf_counter()
    matcher = EmbeddingMatcher(
        model_path=str(settings.model_path) if settings.model_path else None, cache_dir=cache_dir
    )
    vectors = matcher.catalog_vectors()
    print(
        f"cached {len(vectors)} catalog embeddings in {cache_dir} "
        f"({time.perf_counter() - started:.1f} s)"
    )


if __name__ == "__main__":
    main()

"""One construct per concern; each takes keyword-only, typed arguments and exposes its resources."""

"""Sample input that ships with the package: five real scraped articles about one story.

``make run`` publishes them, the test suite and the benchmarks feed them in, and
``newsflow eval enrichment`` scores entities on two of them. Each file's source,
URL and dates are in ``seeds/manifest.json``.
"""

from pathlib import Path

SEEDS = Path(__file__).parent / "seeds"

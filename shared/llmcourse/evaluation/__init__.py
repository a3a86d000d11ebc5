"""Stage 5, evaluation: test cases (``cases``), the one scorer (``scoring``), asking models (``ask``),
base vs fine-tuned benchmarks (``benchmark``) and the Day 3 project's evidence (``project``)."""

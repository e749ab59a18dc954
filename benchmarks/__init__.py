"""genred's benchmarks: plain scripts, ``python benchmarks/<name>.py [--tracks N] [--quick]``.

Each script generates its own inputs (``benchmarks/inputs.py``, cached between runs),
prints the machine it ran on and its figures as ``RESULT name = value unit`` lines.
"""

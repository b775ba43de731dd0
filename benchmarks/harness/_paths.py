"""Put this checkout's ``src/`` (measured whether or not emdstream is installed) and
``benchmarks/`` (``_breakdown``, the bench scripts) first on ``sys.path``."""
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(_HERE)), "src"))
sys.path.insert(0, os.path.dirname(_HERE))

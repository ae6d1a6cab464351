"""The jepardy trainer: GPT + JEPA loss + EMA + quantized, compressed export.

Importing this package has no side effects and imports no torch; `python -m jepardy.trainer`
runs `train.main()`.
"""

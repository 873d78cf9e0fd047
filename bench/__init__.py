"""mr's benchmark suite: mr side by side with llama.cpp's own tools, built from the same source.

Run it with `python -m bench` (see bench/README.md); every part is also a module of its own.
"""

"""What `mr --help` lists: every verb with a one-line description, grouped as `docker model --help`
groups them. Written out here because reading each verb's docstring would import every module
(`mr --help` must stay fast); a test checks each line against the verb's own help."""

from __future__ import annotations

GROUPS: list[tuple[str, list[tuple[str, str]]]] = [
    ("Models", [
        ("pull", "Pull a model from a registry (Docker Hub by default)."),
        ("push", "Push a local model to its registry."),
        ("package", "Package a GGUF file into a model artifact tagged TARGET."),
        ("tag", "Create a tag TARGET that refers to the model SOURCE."),
        ("list", "List the models in the store (alias: ls)."),
        ("show", "Show a model's summary: architecture, size, capabilities, license."),
        ("inspect", "Show a model's details as JSON."),
        ("rm", "Remove models (untag; delete the model with its last tag)."),
        ("purge", "Remove every model from the store."),
        ("df", "Show the disk space the model store uses."),
    ]),
    ("Running", [
        ("run", "Run MODEL (a store name or a .gguf path): answer PROMPT, or chat when there is none."),
        ("serve", "Serve the models of the store over HTTP (OpenAI, Docker Model Runner and Ollama APIs)."),
        ("worker", "Serve this machine's backend to mr servers over llama.cpp's RPC protocol."),
        ("ps", "List the models the server has loaded."),
        ("unload", "Unload MODELS (or --all) from the server's memory."),
        ("configure", "Persist runtime settings for MODEL (applied at its next load; keep-alive at once)."),
        ("status", "Say whether the server runs, with its memory budget and loaded models."),
        ("requests", "Show the server's recent requests and responses."),
        ("logs", "Show the log of `mr serve`."),
    ]),
    ("Other", [
        ("bench", "Measure MODEL's tokens/s at several concurrency levels on the running server."),
        ("version", "Show mr's version and the llama.cpp commit it carries."),
    ]),
]
ALIASES = {"ls": "list"}

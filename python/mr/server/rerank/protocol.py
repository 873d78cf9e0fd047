"""Wire types of /rerank and /score."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta, Struct

MAX_DOCUMENTS = 1024
Text = Annotated[str, Meta(min_length=1)]


class DocumentIn(Struct, kw_only=True):
    text: str


class RerankRequest(Struct, kw_only=True):
    model: str
    query: Text
    documents: Annotated[list[str | DocumentIn], Meta(min_length=1, max_length=MAX_DOCUMENTS)]
    top_n: Annotated[int, Meta(ge=1)] | None = None
    return_documents: bool = False
    truncate: bool = False  # cut pairs longer than the context instead of refusing them


class DocumentOut(Struct, kw_only=True):
    text: str


class RerankResult(Struct, kw_only=True, omit_defaults=True):
    index: int
    relevance_score: float
    document: DocumentOut | None = None


class RerankUsage(Struct, kw_only=True):
    prompt_tokens: int
    total_tokens: int


class RerankResponse(Struct, kw_only=True):
    model: str
    results: list[RerankResult]
    usage: RerankUsage
    object: str = "list"
    id: str = ""


Texts = Text | Annotated[list[Text], Meta(min_length=1, max_length=MAX_DOCUMENTS)]


class ScoreRequest(Struct, kw_only=True):
    model: str
    text_1: Texts
    text_2: Texts
    truncate: bool = False


class ScoreData(Struct, kw_only=True):
    index: int
    score: float
    object: str = "score"


class ScoreResponse(Struct, kw_only=True):
    id: str
    created: int
    model: str
    data: list[ScoreData]
    usage: RerankUsage
    object: str = "list"

"""GET /v1/models and /v1/models/{id}: the models in the store, OpenAI's shape, with what each
takes (`capabilities`: "vision" and "audio" where its projector encodes them)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated

from litestar import get
from litestar.params import Parameter

from mr.errors import ModelNotFoundError
from mr.server.context import Req, server_context
from mr.server.openai.protocol import ModelCard, ModelList

if TYPE_CHECKING:
    from mr.store import Store
    from mr.store.model import LocalModel


def _cards(store: Store) -> list[ModelCard]:
    from mr.store import reference as refs

    cards: list[ModelCard] = []
    for model in store.list():
        caps = _capabilities(model)
        for tag in model.tags or [model.id]:
            name = refs.familiar(tag) if tag != model.id else tag
            cards.append(ModelCard(id=name, created=model.created_ts, capabilities=caps))
    return cards


@get("/models", summary="List models", tags=["OpenAI"])
async def list_models(request: Req) -> ModelList:
    ctx = server_context(request)
    if ctx.store is None:
        return ModelList(data=[])
    return ModelList(data=await asyncio.to_thread(_cards, ctx.store))


@get("/models/{model_id:path}", summary="Retrieve a model", tags=["OpenAI"])
async def get_model(request: Req, model_id: Annotated[str, Parameter()]) -> ModelCard:
    ctx = server_context(request)
    name = model_id.lstrip("/")
    if ctx.store is None:
        raise ModelNotFoundError(f"no such model: {name}")
    store = ctx.store
    model = await asyncio.to_thread(store.resolve, name)
    caps = await asyncio.to_thread(_capabilities, model)
    return ModelCard(id=name, created=model.created_ts, capabilities=caps)


def _capabilities(model: LocalModel) -> list[str]:
    from mr.store import summary

    return summary.capabilities(model, summary.chat_template(model))

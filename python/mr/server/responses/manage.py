"""GET /v1/responses/{id}, GET /v1/responses/{id}/input_items, DELETE /v1/responses/{id}."""

from __future__ import annotations

from typing import Annotated, Literal

from litestar import Response, delete, get
from litestar.params import Parameter

from mr.jsontypes import JSON
from mr.server.context import Req
from mr.server.errors import invalid
from mr.server.responses.protocol import DeletedResponse, ItemList
from mr.server.responses.store import Entry, ResponseNotFoundError, store_of
from mr.server.sse import encode

ResponseId = Annotated[str, Parameter(max_length=256)]


def _entry(request: Req, response_id: str) -> Entry:
    entry = store_of(request).get(response_id)
    if entry is None:
        raise ResponseNotFoundError(response_id)
    return entry


@get("/responses/{response_id:str}", summary="Retrieve a stored response", tags=["OpenAI"])
async def get_response(request: Req, response_id: ResponseId) -> Response[bytes]:
    return Response(encode(_entry(request, response_id).response), media_type="application/json")


@get("/responses/{response_id:str}/input_items", summary="List a stored response's input items",
     tags=["OpenAI"])
async def list_input_items(request: Req, response_id: ResponseId,
                           limit: Annotated[int, Parameter(ge=1, le=100)] = 20,
                           order: Annotated[Literal["asc", "desc"], Parameter()] = "desc",
                           after: Annotated[str | None, Parameter(max_length=256)] = None) -> ItemList:
    items: list[JSON] = list(_entry(request, response_id).input_items)
    if order == "desc":
        items.reverse()
    if after is not None:
        ids = [item["id"] for item in items]
        if after not in ids:
            raise invalid("after", f"after names {after!r}, which is not an input item of this response")
        items = items[ids.index(after) + 1:]
    page = items[:limit]
    return ItemList(data=page, first_id=page[0]["id"] if page else None,
                    last_id=page[-1]["id"] if page else None, has_more=len(items) > limit)


@delete("/responses/{response_id:str}", summary="Delete a stored response", tags=["OpenAI"], status_code=200)
async def delete_response(request: Req, response_id: ResponseId) -> DeletedResponse:
    if not store_of(request).delete(response_id):
        raise ResponseNotFoundError(response_id)
    return DeletedResponse(id=response_id)


HANDLERS = [get_response, list_input_items, delete_response]

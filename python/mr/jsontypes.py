"""One name for a decoded JSON object (stdlib only, so any module may import it).

msgspec Structs type the bodies mr knows field by field. `JSON` names the open parts between
them: tool definitions and JSON schemas, a template's extra variables, a manifest's config, a
body's fields read loosely. Code reads those by key and checks each value where it reads it.
"""

from typing import Any, TypeAlias

JSON: TypeAlias = dict[str, Any]

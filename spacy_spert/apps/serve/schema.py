"""The schema of the ``serve`` API for its OpenAPI description: the records
of :func:`~spacy_spert.io.records.doc_to_record` (``predict``'s JSONL lines) as
pydantic models. The API writes the records themselves; these models only
document them."""

from typing import Any, Dict, List, Optional

from pydantic import BaseModel, ConfigDict, Field


class Entity(BaseModel):
    start: int = Field(description="Character offset of the first character")
    end: int = Field(description="Character offset after the last character (exclusive)")
    token_start: int = Field(description="Index of the first token")
    token_end: int = Field(description="Index after the last token (exclusive)")
    label: str = Field(description="Entity type")
    score: Optional[float] = Field(description="SpERT: probability; SpERT.MT: class score")
    text: str = Field(description="The entity's text")


class Relation(BaseModel):
    head: int = Field(description="Index of the head entity in 'entities'")
    tail: int = Field(description="Index of the tail entity in 'entities'")
    label: str = Field(description="Relation type")
    score: float = Field(description="SpERT: probability; SpERT.MT: class score")


class Record(BaseModel):
    """One text's entities and relations; fields sent with the text come first."""

    model_config = ConfigDict(extra="allow")
    text: str
    entities: List[Entity]
    relations: List[Relation]


class Limits(BaseModel):
    max_chars: int = Field(description="The most characters of one text")
    max_texts: int = Field(description="The most texts of one request")


class Health(BaseModel):
    status: str
    model_class: str = Field(description="Always 'spacy-spert' (Label Studio's ML backends name their class)")
    model_version: str = Field(description="The model version the Label Studio routes answer")
    model: str
    pipeline: List[str]
    spans_key: str
    limits: Limits


class ErrorModel(BaseModel):
    detail: str = Field(description="What is wrong with the request, in one line")


_TEXT = {"type": "string", "minLength": 1, "description": "The text (not empty or whitespace only)"}
EXTRACT_REQUEST_SCHEMA: Dict[str, Any] = {
    "oneOf": [
        {
            "type": "object",
            "title": "One text",
            "required": ["text"],
            "properties": {"text": _TEXT},
            "additionalProperties": True,
            "description": "Other fields are carried through to the record",
        },
        {
            "type": "object",
            "title": "A list of texts",
            "required": ["texts"],
            "properties": {
                "texts": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "oneOf": [
                            _TEXT,
                            {
                                "type": "object",
                                "required": ["text"],
                                "properties": {"text": _TEXT},
                                "additionalProperties": True,
                            },
                        ]
                    },
                }
            },
        },
    ],
    "examples": [
        {"text": "Anna Lee works for Acme in Oslo."},
        {"texts": ["Anna Lee works for Acme in Oslo.", {"id": "doc-2", "text": "Bo Li lives in Lund."}]},
    ],
}

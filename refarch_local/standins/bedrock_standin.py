"""Amazon Bedrock's InvokeModel (embedding models) and Rerank APIs as boto3 reaches them, with deterministic answers."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from refarch.bedrock import EMBEDDING_MODELS, RERANK_MODELS, foundation_model_arn
from refarch.search.rerank import RERANK_TEXT_MAX_CHARS
from refarch_local.standins.openai_standin import estimated_tokens, hashed_embedding
from refarch_local.standins.server import ApiError, Request, Route, StandInServer

INVOKE_PATH = re.compile(r"/model/(?P<model>[^/]+)/invoke")
FOUNDATION_MODEL_ARN = re.compile(r"arn:aws:bedrock:(?P<region>[a-z0-9-]+)::foundation-model/(?P<model>.+)")
# Bedrock's error codes by HTTP status (botocore reads the code from `__type` in the body).
ERROR_CODES = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    413: "ValidationException",
    429: "ThrottlingException",
    500: "InternalServerException",
}
TITAN_FIELDS = {"inputText", "dimensions", "normalize", "embeddingTypes"}
COHERE_FIELDS = {"texts", "input_type", "truncate", "embedding_types", "images"}
COHERE_INPUT_TYPES = {"search_document", "search_query", "classification", "clustering"}
MAX_RERANK_SOURCES = 1000
CREDENTIAL = re.compile(r"Credential=(?P<key>[^/]+)/\d{8}/(?P<region>[a-z0-9-]+)/bedrock/aws4_request")
# (access key id, IAM action, resource ARN) -> why the call is refused, or None when it is allowed.
Authorizer = Callable[[str, str, str], str | None]


class BedrockStandIn(StandInServer):
    """`POST /model/{modelId}/invoke` for the embedding models refarch supports, and `POST /rerank`.

    Serves the real boto3 `bedrock-runtime` and `bedrock-agent-runtime` clients (endpoint_url =
    `url`; any SigV4-signed request is accepted). Checks what the APIs check (a known model, its
    fields, text and batch limits, allowed dimensions) and answers with the OpenAI stand-in's hashed
    word vectors, so texts sharing words are close; Rerank scores a document by that closeness to
    the query. Faults: the shared `fail_next` / `fault_rate` (a `rate_limit` is Bedrock's
    ThrottlingException), and `refuse(marker)`: a text containing `marker` gets a ValidationException.
    `texts` counts the texts embedded; `embed_calls` the InvokeModel calls answered.
    With an `authorizer` (the deploy rehearsal's IAM), every call is authorized as IAM would:
    bedrock:InvokeModel on the model's foundation-model ARN, bedrock:Rerank on "*" plus InvokeModel
    on the rerank model's ARN; a refusal is an AccessDeniedException.
    """

    name = "bedrock-standin"

    def __init__(self, *, authorizer: Authorizer | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.authorizer = authorizer
        self.texts = 0
        self.reranked = 0
        self.refused_marker: str | None = None
        self.routes[("POST", "/model/{model}/invoke")] = ("invoke", self._invoke)
        self.routes[("POST", "/rerank")] = ("rerank", self._rerank)

    @property
    def embed_calls(self) -> int:
        """InvokeModel calls answered with vectors."""
        return self.calls["invoke"]

    @property
    def rerank_calls(self) -> int:
        """Rerank calls answered."""
        return self.calls["rerank"]

    def refuse(self, marker: str | None) -> None:
        """Refuse (ValidationException) every text containing `marker` from now on; None stops refusing."""
        with self._lock:
            self.refused_marker = marker

    def reset(self) -> None:
        """Forget counters, received requests, scripted faults and the refused marker."""
        super().reset()
        with self._lock:
            self.texts = 0
            self.reranked = 0
            self.refused_marker = None

    def route_for(self, request: Request) -> tuple[str, Route] | None:
        """`/model/<model id>/invoke` goes to the invoke route (which reads the model id from the path)."""
        if request.method == "POST" and INVOKE_PATH.fullmatch(request.path):
            return self.routes[("POST", "/model/{model}/invoke")]
        return super().route_for(request)

    def authorize(self, request: Request) -> None:
        """A SigV4 signature for the `bedrock` service is required (its validity is not checked)."""
        authorization = request.headers.get("authorization", "")
        if not authorization.startswith("AWS4-HMAC-SHA256 ") or "/bedrock/aws4_request" not in authorization:
            raise ApiError(403, "Missing Authentication Token")

    def _check(self, request: Request, action: str, resource: str = "*") -> None:
        """Ask the authorizer (if any) whether the caller's keys may do `action` on `resource`."""
        credential = CREDENTIAL.search(request.headers.get("authorization", ""))
        if self.authorizer is None or credential is None:
            return
        refusal = self.authorizer(credential.group("key"), action, resource)
        if refusal is not None:
            raise ApiError(403, f"not authorized to perform: {action} on resource: {resource} ({refusal})")

    @staticmethod
    def _model_arn(request: Request, model: str) -> str:
        credential = CREDENTIAL.search(request.headers.get("authorization", ""))
        return foundation_model_arn(credential.group("region") if credential else "us-east-1", model)

    def error_body(self, error: ApiError) -> dict[str, Any]:
        """Bedrock's error JSON: the code in `__type`, the words in `message`."""
        code = ERROR_CODES.get(error.status, "InternalServerException")
        if error.status == 429:
            return {"__type": code, "message": "Too many requests, please wait before trying again."}
        return {"__type": code, "message": error.message}

    # -- InvokeModel -------------------------------------------------------------------------

    def _invoke(self, request: Request) -> dict[str, Any]:
        match = INVOKE_PATH.fullmatch(request.path)
        model = unquote(match.group("model")) if match else ""
        self._check(request, "bedrock:InvokeModel", self._model_arn(request, model))
        spec = EMBEDDING_MODELS.get(model)
        if spec is None:
            raise ApiError(400, f"The provided model identifier is invalid: {model}")
        body = request.body
        if not isinstance(body, dict):
            raise ApiError(400, "Malformed input request, please reformat your input and try again.")
        texts, answer = self._titan(body) if spec.family == "titan" else self._cohere(body)
        marker = self.refused_marker
        if marker is not None and any(marker in t for t in texts):
            raise ApiError(400, "Malformed input request: the input was refused (injected)")
        with self._lock:
            self.texts += len(texts)
        return answer

    def _titan(self, body: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
        unknown = set(body) - TITAN_FIELDS
        if unknown:
            raise ApiError(400, f"Malformed input request: extraneous key [{sorted(unknown)[0]}] is not permitted")
        text = body.get("inputText")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "Malformed input request: inputText must be a non-blank string")
        if len(text) > 50_000 or estimated_tokens(text) > 8192:
            raise ApiError(400, "Malformed input request: inputText exceeds 8192 tokens or 50000 characters")
        dimension = body.get("dimensions", 1024)
        if dimension not in (256, 512, 1024):
            raise ApiError(400, f"Malformed input request: dimensions must be 256, 512 or 1024, not {dimension!r}")
        if body.get("normalize", True) is not True:
            raise ApiError(400, "this stand-in returns normalised vectors only; send normalize: true")
        return [text], {"embedding": hashed_embedding(text, dimension), "inputTextTokenCount": estimated_tokens(text)}

    def _cohere(self, body: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
        unknown = set(body) - COHERE_FIELDS
        if unknown:
            raise ApiError(400, f"Malformed input request: extraneous key [{sorted(unknown)[0]}] is not permitted")
        texts = body.get("texts")
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise ApiError(400, "Malformed input request: texts must be a non-empty list of strings")
        if len(texts) > 96:
            raise ApiError(400, f"Malformed input request: expected maxItems: 96, actual: {len(texts)}")
        if any(len(t) > 2048 for t in texts):
            raise ApiError(400, "Malformed input request: expected maxLength: 2048 for each text")
        if body.get("input_type") not in COHERE_INPUT_TYPES:
            raise ApiError(400, f"Malformed input request: input_type must be one of {sorted(COHERE_INPUT_TYPES)}")
        if body.get("embedding_types", ["float"]) != ["float"]:
            raise ApiError(400, "this stand-in returns float embeddings only; send embedding_types: ['float']")
        vectors = [hashed_embedding(t, 1024) for t in texts]
        return texts, {
            "id": "standin",
            "texts": texts,
            "embeddings": {"float": vectors},
            "response_type": "embeddings_by_type",
        }

    # -- Rerank (bedrock-agent-runtime) --------------------------------------------------------

    def _rerank(self, request: Request) -> dict[str, Any]:
        self._check(request, "bedrock:Rerank")
        body = request.body if isinstance(request.body, dict) else {}
        queries = body.get("queries") or []
        if len(queries) != 1 or queries[0].get("type") != "TEXT":
            raise ApiError(400, "queries must hold exactly one TEXT query")
        query = str(queries[0].get("textQuery", {}).get("text") or "")
        if not 1 <= len(query) <= RERANK_TEXT_MAX_CHARS:
            raise ApiError(400, f"the query's text must hold 1 to {RERANK_TEXT_MAX_CHARS} characters")
        sources = body.get("sources") or []
        if not 1 <= len(sources) <= MAX_RERANK_SOURCES:
            raise ApiError(400, f"sources must hold 1 to {MAX_RERANK_SOURCES} documents, not {len(sources)}")
        documents = [self._document_text(source) for source in sources]
        config = body.get("rerankingConfiguration") or {}
        bedrock = config.get("bedrockRerankingConfiguration") or {}
        arn = FOUNDATION_MODEL_ARN.fullmatch(str(bedrock.get("modelConfiguration", {}).get("modelArn", "")))
        if config.get("type") != "BEDROCK_RERANKING_MODEL" or arn is None or arn.group("model") not in RERANK_MODELS:
            raise ApiError(400, f"modelArn must be the foundation-model ARN of one of {', '.join(RERANK_MODELS)}")
        # Rerank runs the model as the caller: InvokeModel on its ARN is checked as well.
        self._check(request, "bedrock:InvokeModel", arn.group(0))
        wanted = bedrock.get("numberOfResults", len(documents))
        if not isinstance(wanted, int) or not 1 <= wanted <= len(documents):
            raise ApiError(400, f"numberOfResults must be between 1 and the number of sources, not {wanted!r}")
        query_vector = hashed_embedding(query, 1024)
        scores = [
            (sum(a * b for a, b in zip(query_vector, hashed_embedding(doc, 1024), strict=True)) + 1) / 2
            for doc in documents
        ]
        order = sorted(range(len(documents)), key=lambda i: (-scores[i], i))[:wanted]
        with self._lock:
            self.reranked += len(documents)
        return {"results": [{"index": i, "relevanceScore": scores[i]} for i in order]}

    @staticmethod
    def _document_text(source: dict[str, Any]) -> str:
        document = source.get("inlineDocumentSource") or {}
        if source.get("type") != "INLINE" or document.get("type") != "TEXT":
            raise ApiError(400, "sources must be INLINE TEXT documents")
        text = document.get("textDocument", {}).get("text")
        if not isinstance(text, str) or not text:
            raise ApiError(400, "each source needs a non-empty text")
        if len(text) > RERANK_TEXT_MAX_CHARS:
            raise ApiError(400, f"a document's text may hold {RERANK_TEXT_MAX_CHARS} characters, not {len(text)}")
        return text

"""POST /v1/explain: word occlusion (finsight/predict/explain.py) on the served predictor.

The variants of a text are one predictor call, run on the predictor's thread like a batch
(never beside one), within ``serve.request_timeout_s`` and the circuit breaker.
"""

from finsight.data.clean import text_error
from finsight.predict.explain import Explanation, explain_texts
from finsight.serve.schemas import ExplainResponse, SentenceExplanation, WordScore
from finsight.serve.service import Service


async def explain(service: Service, text: str) -> ExplainResponse:
    error = text_error(text)
    if error is not None:
        return ExplainResponse(label=None, confidence=None, sentiment=None, text=None, words=[],
                               sentences=None, model=service.model_ref, error=error)
    [result] = await service.batcher.run(explain_texts, service.predictor, [text])
    sentences = None if result.sentences is None else [_sentence(s) for s in result.sentences]
    return ExplainResponse(label=result.label, confidence=result.confidence, sentiment=result.sentiment,
                           text=result.text, words=_words(result), sentences=sentences,
                           model=service.model_ref)


def _sentence(result: Explanation) -> SentenceExplanation:
    return SentenceExplanation(text=result.text, label=result.label, confidence=result.confidence,
                               sentiment=result.sentiment, words=_words(result))


def _words(result: Explanation) -> list[WordScore]:
    return [WordScore(word=w.word, start=w.start, end=w.end, contribution=w.contribution, sentiment=w.sentiment)
            for w in result.words]

"""Batched answers equal one-at-a-time answers (greedy), each row keeps its own limit, pieces add up."""
import pytest

from conftest import CPU_CONFIG
from llmcourse.config import load_config

QUESTIONS = ["退货期多久？", "你们的客服电话是多少？请详细说明。", "hi"]


@pytest.fixture(scope="module")
def chat_model():
    from llmcourse.serving.server import ChatModel
    return ChatModel(load_config(CPU_CONFIG), adapter=None)


def ask(chat_model, question, max_tokens):
    return chat_model.batcher.submit(chat_model.encode([{"role": "user", "content": question}])["input_ids"][0].tolist(),
                                     max_tokens, 0.0, 1.0)


def test_requests_submitted_together_share_a_batch_and_match_single_answers(chat_model):
    alone = [ask(chat_model, q, 12).wait(120) for q in QUESTIONS]
    before = len(chat_model.batcher.batch_sizes)
    together = [ask(chat_model, q, limit) for q, limit in zip(QUESTIONS, (12, 5, 12))]
    together = [job.wait(120) for job in together]
    assert max(chat_model.batcher.batch_sizes[before:]) > 1
    # Left padding changes float rounding slightly; rows mixed up would differ from the first characters.
    assert together[0].text[:4] == alone[0].text[:4] and together[2].text[:4] == alone[2].text[:4]
    assert together[1].text[:4] == alone[1].text[:4]
    assert len(together[1].tokens) <= 5
    for job in together:
        assert job.finish_reason in ("stop", "length") and job.done.is_set()


def test_streamed_pieces_join_to_the_answer(chat_model):
    job = ask(chat_model, QUESTIONS[0], 12)
    pieces = list(job)
    assert "".join(pieces).strip() == job.text and job.completion_tokens >= len(job.tokens)

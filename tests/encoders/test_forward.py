"""The model side of encoding without a model: token-budget batches, padding, pooling, CPUs."""

from __future__ import annotations

import numpy as np
import torch

from encoders.forward import available_cpus, padded_batch, pool, token_batches


def test_batches_fit_the_token_budget_and_keep_every_index_once() -> None:
    ids = [[1] * n for n in (9, 7, 7, 4, 3, 3, 2, 1)]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)
    batches = token_batches(order, ids, budget=16)
    assert [i for batch in batches for i in batch] == order
    for batch in batches:
        width = max(len(ids[i]) for i in batch)
        assert width * len(batch) <= 16 or len(batch) == 1


def test_a_text_longer_than_the_budget_gets_a_batch_alone() -> None:
    ids = [[1] * 20, [1] * 2, [1] * 2]
    assert token_batches([0, 1, 2], ids, budget=8) == [[0], [1, 2]]


def test_padding_is_on_the_right_and_the_mask_marks_the_tokens() -> None:
    input_ids, mask = padded_batch([[5, 6, 7], [8], [9, 10]], pad_id=0)
    assert input_ids.tolist() == [[5, 6, 7], [8, 0, 0], [9, 10, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0], [1, 1, 0]]
    assert input_ids.dtype == mask.dtype == np.int64


def test_pooling_reads_only_the_tokens_of_each_row() -> None:
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[5.0, -1.0], [9.0, 9.0], [9.0, 9.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert pool(hidden, mask, "mean").tolist() == [[2.0, 3.0], [5.0, -1.0]]
    assert pool(hidden, mask, "max").tolist() == [[3.0, 4.0], [5.0, -1.0]]
    assert pool(hidden, mask, "cls").tolist() == [[1.0, 2.0], [5.0, -1.0]]


def test_available_cpus_is_positive() -> None:
    assert available_cpus() >= 1

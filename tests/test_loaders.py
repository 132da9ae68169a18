"""The DataLoaders every DataModule builds: stateful for training, sharded evaluation refused when it cannot
give every process a row, and a training seed that follows the run's."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

from lightning_albert.errors import InputError
from lightning_albert.loaders import check_shardable, loader, training_seed


def test_training_loaders_are_stateful_and_resume_where_they_stood():
    data = list(range(10))
    batches = [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    train = loader(data, batches, lambda items: items, num_workers=0, stateful=True)
    assert isinstance(train, StatefulDataLoader)
    it = iter(train)
    assert [next(it), next(it)] == [[0, 1], [2, 3]]
    resumed = loader(data, batches, lambda items: items, num_workers=0, stateful=True)
    resumed.load_state_dict(train.state_dict())
    assert list(resumed) == [[4, 5], [6, 7], [8, 9]]
    assert type(loader(data, batches, lambda items: items, num_workers=0)) is DataLoader


def test_evaluation_needs_a_row_per_process():
    check_shardable("validation", 2, 2)
    with pytest.raises(InputError, match="the validation data has 1 rows but there are 2 processes"):
        check_shardable("validation", 1, 2)


def test_the_training_seed_is_the_runs_or_the_one_torch_was_seeded_with():
    assert training_seed(7) == 7
    torch.manual_seed(1234)
    assert training_seed(None) == 1234
    assert isinstance(training_seed(None), int) and not isinstance(training_seed(None), np.integer)

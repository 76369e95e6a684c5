import numpy as np
import pytest

import bigmodel_fast as bf


@pytest.fixture
def rng():
    return np.random.default_rng(1234)

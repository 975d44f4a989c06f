from typing import Any

import numpy as np
import numpy.typing as npt

def search(
    native: Any, queries: Any, k: Any, dim: int, n_live: int, l2: bool, lock: Any, /
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]] | None: ...

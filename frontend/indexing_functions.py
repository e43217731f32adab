"""NumPy's indexing functions, registered from indexing.py's handlers: take, take_along_axis."""
from __future__ import annotations

import numpy as np

from .indexing import take, take_along_axis
from .numpy_api import implements

implements(np.take, method="take")(take)
implements(np.take_along_axis)(take_along_axis)

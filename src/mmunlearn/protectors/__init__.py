"""Data-side protection (unlearnable examples) for image-caption pairs, and victims to test it.

One file per generator (registry key = file name): ``clean``, ``random_noise``, ``random_trigger``,
``em``, ``trigger_only``, ``mem``. Importing this package registers all of them in `PROTECTORS`::

    from mmunlearn.protectors import PROTECTORS
    protected = PROTECTORS.create("mem", seed=0).protect(splits.train)
    protected.save("runs/protected")
    victim_train = protected.apply(splits.train)
"""

from . import clean, em, mem, random_noise, random_trigger, trigger_only  # noqa: F401  (importing registers the generators)
from .base import PROTECTORS, SURROGATE_ARCH, Generated, ProtectConfig, Protector
from .protected import ProtectedDataset, add_noise, prepend_triggers, quantize_noise, trigger_budget

__all__ = [
    "PROTECTORS",
    "SURROGATE_ARCH",
    "Generated",
    "ProtectConfig",
    "ProtectedDataset",
    "Protector",
    "add_noise",
    "prepend_triggers",
    "quantize_noise",
    "trigger_budget",
]
